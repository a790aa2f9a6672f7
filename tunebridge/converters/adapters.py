"""LoRA adapters across PEFT, MindFormers (mindpet_delta_lora_*) and Megatron-mcore (MindSpeed-LLM's fused LoRA).

The canonical adapter holds one (A [r, in], B [out, r]) pair per (projection, layer). MindSpeed-LLM
puts one pair on each fused module (q, k, v share ``linear_qkv``'s A; gate and up share ``linear_fc1``'s):
fused -> per-projection copies A and splits B (exact); per-projection -> fused needs every covered
projection adapted with equal A matrices, and is refused otherwise. A mixture of experts' expert tensors hold one pair
per expert, stacked like the tensors (A [E, r, in], B [E, out, r]); PEFT fuses gate and up there too
(``gate_up_proj``) and saves each layer's pairs as one (A [E r, in], B [out, r E]), experts interleaved in B's columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import TunebridgeError
from ..io.atomic import atomic_dir
from ..model.accounting import native_name
from ..model.dialects import HF, MCORE, MINDFORMERS, Dialect, LoraModule, Shard
from ..model.dialects.hf import PEFT_PARAMETER, PEFT_TARGET, peft_parameter_lora_names
from ..model.dialects.mindformers import pet_target_regex
from ..model.layout import merge, pack, split, unpack
from ..model.partition import Layout, tp_problem
from ..model.spec import ADAPTABLE, PROJECTIONS, ModelSpec
from .formats import MF_ADAPTER, PEFT_BIN, PEFT_CONFIG, PEFT_WEIGHTS, adapter_format, mcore as mcore_fmt, msckpt
from .formats.hf import load_bin
from .formats.safetensors_stream import SafetensorsReader, SafetensorsWriter, tensor_bytes
from .formats.torchzip import lazy_load


@dataclass
class Adapter:
    rank: int
    alpha: float
    dropout: float = 0.0
    pairs: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def projections(self) -> list[str]:
        """The canonical tensors it adapts (projections; a mixture of experts' expert tensors)."""
        present = {p for p, _ in self.pairs}
        return [p for p in ADAPTABLE if p in present]


Pair = tuple[torch.Tensor, torch.Tensor]


def module_pairs(adapter: Adapter, spec: ModelSpec, dialect: Dialect, who: str) -> dict[tuple[LoraModule, int], Pair]:
    """One pair per LoRA module of ``dialect`` and layer: the covered tensors' shared A and their B stacked (rows);
    refused unless exact (``who`` fuses them)."""
    fused = {}
    layers = sorted({i for _, i in adapter.pairs})
    for module in dialect.lora_modules_of(spec):
        present = [p for p in module.covers if any((p, i) in adapter.pairs for i in layers)]
        if not present:
            continue
        missing = [p for p in module.covers if p not in present]
        if missing:
            raise TunebridgeError(
                f"cannot express LoRA on {present} as {who}'s fused {native_name(module)} "
                f"(it also covers {missing}, which this adapter does not adapt): not exact"
            )
        for i in layers:
            a_mats = [adapter.pairs[(p, i)][0] for p in module.covers]
            if any(not torch.equal(a_mats[0], a) for a in a_mats[1:]):
                raise TunebridgeError(
                    f"layer {i}: {native_name(module)} shares one LoRA A across {list(module.covers)}, but this "
                    f"adapter's A matrices differ: a fused adapter cannot represent it exactly"
                )
            fused[(module, i)] = a_mats[0], torch.cat([adapter.pairs[(p, i)][1] for p in module.covers], dim=-2)
    return fused


def _unfuse(adapter: Adapter, spec: ModelSpec, module: LoraModule, layer: int, a: torch.Tensor, b: torch.Tensor):
    """Put one module's pair into ``adapter``: A for each covered tensor, B split into theirs (rows). A single
    tensor's pair is kept as it is, for :func:`read_adapter` to check against the model."""
    rows = [spec.shape(p)[-2] for p in module.covers]
    if len(rows) > 1 and b.shape[-2] != sum(rows):
        raise TunebridgeError(
            f"layer {layer} {native_name(module)}: LoRA B has {b.shape[-2]} rows, {spec.name}'s {list(module.covers)} "
            f"have {sum(rows)}: is --model / --hf-config the adapter's base model?"
        )
    for p, bp in zip(module.covers, b.split(rows, dim=-2) if len(rows) > 1 else [b]):
        adapter.pairs[(p, layer)] = a, bp.contiguous()


# --- PEFT ----------------------------------------------------------------------------------------


def read_peft(path: str | Path, spec: ModelSpec) -> Adapter:
    path = Path(path)
    try:
        cfg = json.loads((path / PEFT_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no {PEFT_CONFIG} (not a PEFT adapter directory)") from None
    weights = path / PEFT_WEIGHTS
    get: Callable[[str], torch.Tensor]
    if weights.exists():
        reader = SafetensorsReader(weights)
        names, get = set(reader.keys()), reader.get_tensor
    elif (path / PEFT_BIN).exists():
        weights = path / PEFT_BIN
        state = load_bin(weights)
        names, get = set(state), state.__getitem__
    else:
        raise TunebridgeError(f"{path}: no {PEFT_WEIGHTS} or {PEFT_BIN} (not a PEFT adapter directory)")
    adapter = Adapter(int(cfg["r"]), float(cfg["lora_alpha"]), float(cfg.get("lora_dropout", 0.0)))
    modules = HF.lora_modules_of(spec)
    wrapped = [m for m in modules if PEFT_PARAMETER.get(m.covers[0]) in (cfg.get("target_parameters") or ())]
    for module in modules:
        experts = module.experts(spec)
        for i in range(spec.num_layers):
            a, b = peft_parameter_lora_names(module, i, wrapped) if module in wrapped else HF.lora_names(module, i)
            if a in names and b in names:
                a_t, b_t = get(a), get(b)
                if experts > 1:  # PEFT's ParamWrapper: A [E r, in] by expert, B [out, r E] with expert e at r * E + e
                    a_t = a_t.reshape(experts, -1, a_t.shape[-1])
                    b_t = b_t.reshape(b_t.shape[0], -1, experts).permute(2, 0, 1)
                _unfuse(adapter, spec, module, i, a_t, b_t)
    if not adapter.pairs:
        raise TunebridgeError(f"{weights}: no LoRA tensors named like {HF.lora_names(HF.lora_modules[0], 0)[0]}")
    return adapter


def write_peft(out: Path, adapter: Adapter, spec: ModelSpec, layout: Layout | None = None, base: str = "") -> None:
    cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": adapter.dropout,
        "bias": "none",
        "base_model_name_or_path": base,
        "target_modules": [PEFT_TARGET[p] for p in adapter.projections if p in PEFT_TARGET],
        "target_parameters": list(dict.fromkeys(PEFT_PARAMETER[p] for p in adapter.projections if p in PEFT_PARAMETER)),
        "fan_in_fan_out": False,
        "inference_mode": True,
    }
    (out / PEFT_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    pairs = module_pairs(adapter, spec, HF, "PEFT")
    wrapped = list(dict.fromkeys(m for m, _ in pairs if m.experts(spec) > 1))
    items = []
    for (module, i), (a, b) in sorted(pairs.items(), key=lambda kv: kv[0][1]):
        if module in wrapped:
            na, nb = peft_parameter_lora_names(module, i, wrapped)
            a, b = a.reshape(-1, a.shape[-1]), b.permute(1, 2, 0).reshape(b.shape[1], -1)
        else:
            na, nb = HF.lora_names(module, i)
        items += [(na, a.contiguous()), (nb, b.contiguous())]
    writer = SafetensorsWriter(
        out / PEFT_WEIGHTS, [(n, t.dtype, tuple(t.shape)) for n, t in items], metadata={"format": "pt"}
    )
    for n, t in items:
        writer.write(n, t)
    writer.close()


# --- MindFormers -----------------------------------------------------------------------------------


def read_mindformers(path: str | Path, spec: ModelSpec) -> Adapter:
    path = Path(path)
    ckpt = path / MF_ADAPTER if path.is_dir() else path
    cfg_path = (path if path.is_dir() else path.parent) / PEFT_CONFIG
    if not cfg_path.exists() and path.is_file() and len(path.parents) > 2:
        # a checkpoint MindFormers saved: output/checkpoint/rank_N/*.ckpt, its adapter_config.json in output/
        cfg_path = path.parents[2] / PEFT_CONFIG if (path.parents[2] / PEFT_CONFIG).exists() else cfg_path
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        # tunebridge's pet_config says lora_rank; MindFormers 1.9's own adapter_config.json is PEFT-style ("r")
        rank, alpha = int(cfg["lora_rank"] if "lora_rank" in cfg else cfg["r"]), float(cfg["lora_alpha"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as e:
        raise TunebridgeError(
            f"{cfg_path}: need the pet_config (lora_rank or r, lora_alpha) next to the LoRA "
            f"checkpoint ({type(e).__name__}: {e})"
        ) from None
    reader = msckpt.CkptReader(ckpt)
    adapter = Adapter(rank, alpha, float(cfg.get("lora_dropout", 0.0)))
    for p in PROJECTIONS:
        module = MINDFORMERS.lora_module_for(p)
        for i in range(spec.num_layers):
            a, b = MINDFORMERS.lora_names(module, i)
            if a in reader.entries and b in reader.entries:
                adapter.pairs[(p, i)] = (reader.get(a), reader.get(b))
    if not adapter.pairs:
        raise TunebridgeError(f"{ckpt}: no mindpet_delta_lora_a/b tensors")
    return adapter


def write_mindformers(out: Path, adapter: Adapter, spec: ModelSpec | None = None, layout: Layout | None = None) -> None:
    cfg = {
        "pet_type": "lora",
        "lora_rank": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": adapter.dropout,
        "target_modules": pet_target_regex(adapter.projections),
    }
    (out / PEFT_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    with open(out / MF_ADAPTER, "wb") as f:
        writer = msckpt.CkptWriter(f)
        for (p, i), (a, b) in sorted(adapter.pairs.items(), key=lambda kv: (kv[0][1], PROJECTIONS.index(kv[0][0]))):
            na, nb = MINDFORMERS.lora_names(MINDFORMERS.lora_module_for(p), i)
            for n, t in ((na, a), (nb, b)):
                writer.write(n, list(t.shape), str(t.dtype).removeprefix("torch."), tensor_bytes(t))
    msckpt.finish_readonly(out / MF_ADAPTER)


# --- Megatron-mcore (fused) ---------------------------------------------------------------------------


def read_mcore(path: str | Path, spec: ModelSpec) -> Adapter:
    """LoRA tensors of an mcore checkpoint (LoRA-only, or full with base_layer), merged over TP, unfused."""
    layout = mcore_fmt.McoreLayout(path)
    first = lazy_load(layout.file(0, 0))
    args = first.get("args")
    rank, alpha = getattr(args, "lora_r", None), getattr(args, "lora_alpha", None)
    num_layer_list = mcore_fmt.saved_layer_list(args)
    stages = mcore_fmt.stages(spec, layout.pp, num_layer_list)
    adapter: Adapter | None = None
    for s, layers in enumerate(stages):
        states = [lazy_load(layout.file(t, s))["model"] for t in range(layout.tp)]
        for module in MCORE.lora_modules_of(spec):
            column = module.parallel is Shard.COLUMN
            rule = MCORE.rule_for_part(module.covers[0], spec)
            for j, g in enumerate(layers):
                pairs = []
                for e in range(spec.num_experts) if module.per_expert else [None]:
                    na, nb = MCORE.lora_names(module, j, e)
                    if na not in states[0]:
                        break
                    a = states[0][na].load() if column else merge([st[na].load() for st in states], Shard.ROW)
                    b = merge([st[nb].load() for st in states], Shard.COLUMN) if column else states[0][nb].load()
                    pairs.append((a, torch.cat(unpack(rule, b, spec, layout.tp))))
                if not pairs:
                    continue
                if adapter is None:
                    if rank is None or alpha is None:
                        raise TunebridgeError(f"{layout.file(0, 0)}: args lack lora_r / lora_alpha")
                    adapter = Adapter(int(rank), float(alpha))
                a, b = (torch.stack(t) for t in zip(*pairs)) if module.per_expert else pairs[0]
                _unfuse(adapter, spec, module, g, a.clone(), b.clone())
    if adapter is None:
        raise TunebridgeError(f"{path}: no lora_A/lora_B tensors")
    return adapter


def fuse(adapter: Adapter, spec: ModelSpec) -> dict[tuple[str, int], Pair]:
    """Per-projection pairs -> one pair per fused mcore module (``(native name, layer)``); refused unless exact."""
    return {(native_name(m), i): pair for (m, i), pair in module_pairs(adapter, spec, MCORE, "MindSpeed-LLM").items()}


def write_mcore(out: Path, adapter: Adapter, spec: ModelSpec, layout: Layout = Layout()) -> None:
    """A LoRA-only mcore checkpoint (what MindSpeed-LLM's --lora-load reads), TP-sharded as MindSpeed-LLM shards it."""
    tp, pp, num_layer_list = layout.tp, layout.pp, layout.num_layer_list
    fused = fuse(adapter, spec)
    modules = {native_name(m): m for m in MCORE.lora_modules_of(spec)}
    stages = mcore_fmt.stages(spec, pp, num_layer_list)
    dtype = next(iter(adapter.pairs.values()))[0].dtype
    args = mcore_fmt.make_args(spec, tp, pp, num_layer_list, 1, dtype)
    args.lora_r, args.lora_alpha = adapter.rank, adapter.alpha
    args.lora_target_modules = [n for n in modules if any(k[0] == n for k in fused)]
    for s, layers in enumerate(stages):
        for t in range(tp):
            state = {}
            for (name, g), (a_all, b_all) in fused.items():
                if g not in layers:
                    continue
                module = modules[name]
                rule = MCORE.rule_for_part(module.covers[0], spec)
                per_expert = zip(range(spec.num_experts), a_all, b_all) if module.per_expert else [(None, a_all, b_all)]
                for e, a, b in per_expert:
                    na, nb = MCORE.lora_names(module, layers.index(g), e)
                    b_packed = pack(rule, list(b.split([spec.shape(p)[-2] for p in module.covers])), spec, tp)
                    if module.parallel is Shard.COLUMN:
                        state[na], state[nb] = a.clone(), split(b_packed, Shard.COLUMN, tp)[t].clone()
                    else:
                        state[na], state[nb] = split(a, Shard.ROW, tp)[t].clone(), b_packed.clone()
            mcore_fmt.write_rank(out, t, s, pp, state, args)
    mcore_fmt.write_latest(out)


# --- entry points ---------------------------------------------------------------------------------------


def read_adapter(path: str | Path, fmt: str, spec: ModelSpec) -> Adapter:
    reader = adapter_format(fmt).load("reader")
    if not Path(path).exists():
        raise TunebridgeError(f"{path}: no such adapter")
    adapter = reader(path, spec)
    for (p, i), (a, b) in adapter.pairs.items():
        *experts, out_features, in_features = spec.shape(p)  # a mixture of experts: a pair per expert, stacked
        want_a, want_b = (*experts, adapter.rank, in_features), (*experts, out_features, adapter.rank)
        if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
            raise TunebridgeError(
                f"{path}: layer {i} {p}: LoRA A {list(a.shape)}, B {list(b.shape)} do not fit "
                f"{spec.name} (A {list(want_a)}, B {list(want_b)}): is --model / --hf-config the adapter's base model?"
            )
    return adapter


def convert_adapter(
    src: str | Path,
    dst: str | Path,
    src_format: str,
    dst_format: str,
    spec: ModelSpec,
    *,
    force: bool = False,
    **layout_fields,
) -> Path:
    """Convert an adapter (``layout``: :class:`tunebridge.model.partition.Layout`'s fields, for an mcore target)."""
    writer = adapter_format(dst_format).load("writer")
    layout = Layout(**layout_fields)
    if adapter_format(dst_format).dialect == "mcore":
        if problem := tp_problem(spec, layout.tp):
            raise TunebridgeError(f"--{problem}")
        mcore_fmt.stages(spec, layout.pp, layout.num_layer_list)
    adapter = read_adapter(src, src_format, spec)
    with atomic_dir(dst, force=force) as tmp:
        writer(tmp, adapter, spec, layout)
    return Path(dst)
