"""``tunebridge convert``, ``convert-adapter``, ``merge-lora`` and ``verify``: weights across HF, mcore and MindFormers."""

from __future__ import annotations

import json
import sys

from ..converters.formats import ADAPTER_FORMATS, DTYPE_NAMES, FORMATS, detect_adapter_format, detect_format
from ..errors import TunebridgeError
from ..io.atomic import check_output
from ..model.catalogue import get_model
from ..model.partition import parse_layer_list
from ..model.spec import ModelSpec
from .args import positive_int


def _spec(args) -> ModelSpec | None:
    if args.model and args.hf_config:
        raise TunebridgeError("give --model or --hf-config, not both")
    if args.model:
        try:
            return get_model(args.model)
        except KeyError as e:
            raise TunebridgeError(str(e.args[0])) from None
    return ModelSpec.from_hf_config(args.hf_config) if args.hf_config else None


def _layer_list(text: str | None) -> list[int] | None:
    try:
        return parse_layer_list(text)
    except ValueError:
        raise TunebridgeError(
            f"--num-layer-list {text!r}: expected comma-separated positive layer counts, e.g. 4,4,3,3"
        ) from None


def _model_flags(p) -> None:
    p.add_argument(
        "--model", help="catalogue model (tunebridge models), for checkpoints that carry no config (a bare .ckpt)"
    )
    p.add_argument("--hf-config", help="HF config.json (or model dir) describing the model")


def _conversion_flags(p, formats: tuple[str, ...]) -> None:
    p.add_argument("src", help="source checkpoint (directory or file)")
    p.add_argument("dst", help="output directory (refused if it exists, unless --force)")
    p.add_argument("--from", dest="src_format", choices=formats, help="source format (default: detected)")
    p.add_argument("--to", dest="dst_format", choices=formats, required=True, help="target format")
    p.add_argument("--tp", type=positive_int, default=1, help="mcore target: tensor-parallel size")
    p.add_argument("--pp", type=positive_int, default=1, help="mcore target: pipeline-parallel size")
    p.add_argument("--num-layer-list", help="mcore target: layers per pipeline stage, e.g. 4,4,3,3")
    p.add_argument("--force", action="store_true", help="replace an existing DST")
    _model_flags(p)


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert a checkpoint between hf, mcore (MindSpeed-LLM) and mindformers")
    _conversion_flags(p, FORMATS)
    p.add_argument(
        "--make-vocab-size-divisible-by",
        type=positive_int,
        default=1,
        help="mcore target: pad the vocabulary to a multiple of this x tp (Megatron's flag)",
    )
    p.add_argument(
        "--ep",
        type=positive_int,
        default=1,
        help="mcore target: expert-parallel size (Megatron's --expert-model-parallel-size; a mixture of experts)",
    )
    p.add_argument("--dtype", choices=DTYPE_NAMES, help="output dtype (default: keep the source's)")
    p.add_argument(
        "--max-shard-size", type=positive_int, default=2 << 30, help="hf target: bytes per safetensors shard"
    )
    p.set_defaults(func=run_convert)

    a = sub.add_parser("convert-adapter", help="convert a LoRA adapter between peft, mindformers and mcore (fused)")
    _conversion_flags(a, ADAPTER_FORMATS)
    a.set_defaults(func=run_convert_adapter)

    m = sub.add_parser("merge-lora", help="merge a LoRA adapter into base weights (scale alpha / rank)")
    m.add_argument("base", help="base weights: HF directory, mcore checkpoint or MindFormers .ckpt")
    m.add_argument("adapter", help="LoRA adapter: PEFT directory, MindFormers or mcore LoRA checkpoint")
    m.add_argument("dst", help="output directory, in the base's format (refused if it exists, unless --force)")
    m.add_argument("--force", action="store_true", help="replace an existing DST")
    _model_flags(m)
    m.set_defaults(func=run_merge)

    v = sub.add_parser("verify", help="compare logits of checkpoints through their own frameworks")
    v.add_argument("checkpoints", nargs="+", metavar="CKPT[:FORMAT]", help="two or more checkpoints")
    v.add_argument("--seq-len", type=positive_int, default=16, help="tokens in the probe sequence (default 16)")
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _model_flags(v)
    v.set_defaults(func=run_verify)


def run_convert(args) -> int:
    from ..converters.checkpoint import convert

    check_output(args.dst, args.force)
    src_format = args.src_format or detect_format(args.src)
    out = convert(
        args.src,
        args.dst,
        src_format,
        args.dst_format,
        tp=args.tp,
        pp=args.pp,
        ep=args.ep,
        num_layer_list=_layer_list(args.num_layer_list),
        make_vocab_size_divisible_by=args.make_vocab_size_divisible_by,
        dtype=args.dtype,
        spec=_spec(args),
        force=args.force,
        max_shard_bytes=args.max_shard_size,
    )
    print(f"wrote {out} ({src_format} -> {args.dst_format})")
    return 0


def run_convert_adapter(args) -> int:
    from ..converters.adapters import convert_adapter

    check_output(args.dst, args.force)
    spec = _spec(args)
    if spec is None:
        raise TunebridgeError("an adapter carries no model description: pass --model or --hf-config")
    src_format = args.src_format or detect_adapter_format(args.src)
    out = convert_adapter(
        args.src,
        args.dst,
        src_format,
        args.dst_format,
        spec,
        tp=args.tp,
        pp=args.pp,
        num_layer_list=_layer_list(args.num_layer_list),
        force=args.force,
    )
    print(f"wrote {out} ({src_format} -> {args.dst_format})")
    return 0


def run_merge(args) -> int:
    from ..converters.merge import merge_lora

    check_output(args.dst, args.force)
    out = merge_lora(args.base, args.adapter, args.dst, spec=_spec(args), force=args.force)
    print(f"wrote {out}")
    return 0


def run_verify(args) -> int:
    from ..converters.checkpoint import open_source
    from ..parity.logits import verify

    if len(args.checkpoints) < 2:
        raise TunebridgeError("verify needs at least two checkpoints")
    paths = []
    for item in args.checkpoints:
        path, _, fmt = item.partition(":") if item.rsplit(":", 1)[-1] in FORMATS else (item, "", "")
        paths.append((path, fmt or detect_format(path)))
    spec = _spec(args)
    for path, fmt in paths:  # tunebridge's own readers refuse a corrupt or unsafe file before any framework loads
        source = open_source(path, fmt, spec)
        spec = spec or source.spec
    assert spec is not None, "every source has a spec and there are at least two"
    results = verify(paths, spec, seq_len=args.seq_len, say=lambda text: print(f"verify: {text}", file=sys.stderr))
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        from rich.table import Table

        t = Table(title=f"logit agreement ({spec.name}, fp32)")
        for col in ("a", "b", "max |Δ|", "mean |Δ|", "cosine", "verdict"):
            t.add_column(col)
        for r in results:
            t.add_row(
                r.a,
                r.b,
                f"{r.max_abs:.3g}",
                f"{r.mean_abs:.3g}",
                f"{r.cosine:.8f}",
                "pass" if r.passed else f"FAIL (needs max |Δ| ≤ {r.max_abs_limit:g}, cosine ≥ {r.cosine_limit})",
            )
        from .tables import console

        console().print(t)
    return 0 if all(r.passed for r in results) else 1
