"""``tunebridge models``: the model catalogue."""

from __future__ import annotations

import json

from ..io.atomic import check_output
from ..model.catalogue import CATALOGUE
from .args import nonnegative_int
from .tables import console, table


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model catalogue with exact parameter counts")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)

    i = sub.add_parser("init-model", help="write a randomly initialised HF model of a catalogue architecture")
    i.add_argument("arch", help="catalogue name (tiny ones are for tests, labs and demos)")
    i.add_argument("out", help="output HF model directory")
    i.add_argument("--seed", type=nonnegative_int, default=0, help="torch seed of the initialisation (default 0)")
    i.add_argument("--force", action="store_true", help="replace an existing output directory")
    i.set_defaults(func=run_init)


def run_init(args) -> int:
    from ..errors import TunebridgeError
    from ..io.atomic import atomic_dir
    from ..model.catalogue import get_model

    try:
        spec = get_model(args.arch)
    except KeyError as e:
        raise TunebridgeError(str(e.args[0])) from None
    if spec.total_params() > 2_000_000_000:
        raise TunebridgeError(f"{spec.name} has {spec.total_params():,} parameters: init-model is for small models")
    check_output(args.out, args.force)
    import torch
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))
    with atomic_dir(args.out, force=args.force) as tmp:
        try:
            model.save_pretrained(tmp)
        except SafetensorError as e:  # safetensors' writer reports a full disk as its own error
            raise TunebridgeError(f"{args.out}: cannot write ({e}); nothing was written") from None
    print(f"wrote {args.out} ({spec.name}, {spec.total_params():,} parameters, seed {args.seed})")
    return 0


def mlp(spec) -> str:
    """The MLP's intermediate size; a mixture of experts as experts x each one's size and the experts per token
    (its dense ``ffn_hidden_size`` is unused when every layer is sparse)."""
    if spec.num_experts:
        return f"{spec.num_experts}x{spec.moe_ffn_hidden_size} top-{spec.experts_per_token}"
    return str(spec.ffn_hidden_size)


def run(args) -> int:
    if args.json:
        print(
            json.dumps(
                {name: {**s.to_dict(), "total_params": s.total_params()} for name, s in CATALOGUE.items()}, indent=2
            )
        )
        return 0
    t = table(
        "tunebridge model catalogue",
        {
            col: "right" if col in ("layers", "hidden", "ffn", "vocab", "params") else "left"
            for col in ("name", "family", "layers", "hidden", "heads/kv", "ffn", "vocab", "bias", "tied", "params")
        },
    )
    for s in CATALOGUE.values():
        bias = "qkvo" if s.o_bias else ("qkv" if s.qkv_bias else "-")
        t.add_row(
            s.name,
            s.family,
            str(s.num_layers),
            str(s.hidden_size),
            f"{s.num_heads}/{s.num_kv_heads}",
            mlp(s),
            str(s.vocab_size),
            bias,
            "yes" if s.tied_embeddings else "no",
            f"{s.total_params():,}",
        )
    console().print(t)
    return 0
