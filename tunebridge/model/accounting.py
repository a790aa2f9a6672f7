"""Exact parameter accounting: base, LoRA or full trainable, per TP/PP rank, and the ratios people quote.

Each backend realises the recipe's canonical LoRA targets through its dialect's LoRA modules; where a
backend fuses projections (MindSpeed-LLM's ``linear_qkv``, ``linear_fc1``) the canonical set may be
inexpressible, and the plan says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..backends.stacks import STACK_NAMES, STACKS
from .dialects import Dialect, LoraModule, Shard, get_dialect
from .partition import padded_vocab_size, stage_layers
from .spec import ADAPTABLE, PROJECTIONS, ModelSpec


def native_name(module: LoraModule) -> str:
    """A LoRA module's name as the framework's target list spells it (q_proj, wq, linear_qkv)."""
    return module.name.rsplit(".", 1)[-1]


def expand_targets(targets: list[str]) -> list[str]:
    """Canonical targets in canonical order; ``all-linear`` means all seven projections."""
    wanted = set(PROJECTIONS) if "all-linear" in targets else set(targets)
    return [p for p in ADAPTABLE if p in wanted]


@dataclass(frozen=True)
class LoraPlan:
    backend: str
    modules: tuple[LoraModule, ...]
    exact: bool
    native_targets: tuple[str, ...]
    note: str = ""

    @property
    def covered(self) -> list[str]:
        return [p for p in ADAPTABLE if any(p in m.covers for m in self.modules)]


def plan_lora(
    backend: str, targets: list[str], native_targets: list[str] | None = None, spec: ModelSpec | None = None
) -> LoraPlan:
    """Map canonical targets onto a backend's LoRA modules (smallest covering superset); with ``spec``, onto the
    modules its model has (a mixture of experts' gate, up and down are its experts')."""
    dialect = get_dialect(backend)
    pool = (
        dialect.lora_modules_of(spec) if spec else tuple(m for m in dialect.lora_modules if m.covers[0] in PROJECTIONS)
    )
    by_native = {native_name(m): m for m in pool}
    wanted = spec.adapted(expand_targets(targets)) if spec else expand_targets(targets)
    if native_targets:
        unknown = [t for t in native_targets if t not in by_native]
        if unknown:
            raise ValueError(f"{backend}: unknown native LoRA targets {unknown} (known: {list(by_native)})")
        chosen = tuple(by_native[t] for t in native_targets)
        covered = [p for p in ADAPTABLE if any(p in m.covers for m in chosen)]
        exact = covered == wanted
        note = (
            ""
            if exact
            else (f"native targets {list(native_targets)} cover {covered}, the recipe's canonical targets are {wanted}")
        )
        return LoraPlan(backend, chosen, exact, tuple(native_targets), note)
    modules: list[LoraModule] = []
    for p in wanted:
        m = next(m for m in pool if p in m.covers)
        if m not in modules:
            modules.append(m)
    covered = [p for p in ADAPTABLE if any(p in m.covers for m in modules)]
    exact = covered == wanted
    note = ""
    if not exact:
        extra = [p for p in covered if p not in wanted]
        fused = [f"{native_name(m)} = {'+'.join(m.covers)}" for m in modules if len(m.covers) > 1]
        note = (
            f"{backend} fuses projections ({'; '.join(fused)}) and shares one LoRA A per fused module: "
            f"targets {wanted} can only be reached through {[native_name(m) for m in modules]}, "
            f"which also adapts {extra}; counts differ from per-projection LoRA"
        )
    return LoraPlan(backend, tuple(modules), exact, tuple(native_name(m) for m in modules), note)


def lora_module_params(module: LoraModule, spec: ModelSpec, rank: int, tp: int = 1, ep: int = 1) -> int:
    """LoRA A+B parameters of one module of one layer on one TP rank (Megatron: column A replicated, B split;
    row A split, B replicated), a pair per expert over a mixture of experts (per EP rank: its experts / ep)."""
    fin, fout = module.in_features(spec), module.out_features(spec)
    if tp == 1 or module.parallel is Shard.REPLICATED:
        pair = rank * (fin + fout)
    elif module.parallel is Shard.COLUMN:
        pair = rank * fin + rank * fout // tp
    else:
        pair = rank * fin // tp + rank * fout
    experts = module.experts(spec)
    return (experts // ep if experts > 1 else 1) * pair


@dataclass
class ParamReport:
    backend: str
    model: str
    method: str
    total_params: int
    trainable_params: int
    low_param_ratio: float
    peft_trainable_percent: float
    exact: bool
    native_targets: list[str]
    note: str
    lora_rank: int | None = None
    per_rank_trainable: list[dict] | None = field(default=None)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["per_rank_trainable"] is None:
            d.pop("per_rank_trainable")
        return d


def low_param_ratio(trainable: int, total: int) -> float:
    """The contests' ratio: trainable / base model total (not PEFT's base + adapter)."""
    return trainable / total


def contest_score(low_param_ratio_value: float, accuracy: float) -> float:
    """(100 % - low-param ratio) * 0.3 + accuracy * 0.7, everything as fractions."""
    return (1.0 - low_param_ratio_value) * 0.3 + accuracy * 0.7


def _full_rank_params(
    spec: ModelSpec, dialect: Dialect, tp: int, layers: range, first: bool, last: bool, divisible_by: int, ep: int = 1
) -> int:
    """Base parameters held by one (tp, pp, ep) rank of a Megatron model (each ep rank holds experts / ep)."""
    n = 0
    vocab = padded_vocab_size(spec.vocab_size, tp, divisible_by)
    for rule in dialect.layer_rules:
        if rule.applies_to(spec):
            numel = sum(spec.numel(p) for p in rule.parts) // (ep if rule.per_expert else 1)
            n += len(layers) * (numel if rule.shard is Shard.REPLICATED else numel // tp)
    vocab_rows = vocab // tp * spec.hidden_size
    if first:
        n += vocab_rows
    if last:
        n += spec.hidden_size  # final norm
        if not spec.tied_embeddings or not first:  # untied head, or the tied copy on the last stage
            n += vocab_rows
    return n


def mcore_rank_params(
    spec: ModelSpec,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    num_layer_list: list[int] | None = None,
    make_vocab_size_divisible_by: int = 1,
) -> list[dict]:
    """Base parameters of each rank of a megatron-core checkpoint (what its rank file holds), in rank order."""
    stages = stage_layers(spec.num_layers, pp, num_layer_list)
    return [
        {
            "pp_rank": s,
            "tp_rank": t,
            **({"ep_rank": e} if ep > 1 else {}),
            "layers": len(layers),
            "trainable": _full_rank_params(
                spec, get_dialect("mcore"), tp, layers, s == 0, s == pp - 1, make_vocab_size_divisible_by, ep
            ),
        }
        for s, layers in enumerate(stages)
        for t in range(tp)
        for e in range(ep)
    ]


def count(
    spec: ModelSpec,
    backend: str,
    method: str = "lora",
    rank: int = 8,
    targets: list[str] | None = None,
    native_targets: list[str] | None = None,
    tp: int = 1,
    pp: int = 1,
    num_layer_list: list[int] | None = None,
    make_vocab_size_divisible_by: int = 1,
    ep: int = 1,
) -> ParamReport:
    """Total and trainable parameters of ``spec`` fine-tuned on ``backend``."""
    if backend not in STACK_NAMES:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(STACK_NAMES)})")
    if problem := STACKS[backend].problem(spec):
        raise ValueError(problem)
    total = spec.total_params()
    dialect = get_dialect(backend)
    split = dialect.sharded and (tp > 1 or pp > 1 or ep > 1)  # Megatron's per-rank counts
    if method == "full":
        per_rank = None
        if split:
            per_rank = mcore_rank_params(spec, tp, pp, ep, num_layer_list, make_vocab_size_divisible_by)
        return ParamReport(backend, spec.name, "full", total, total, 1.0, 100.0, True, [], "", None, per_rank)

    plan = plan_lora(backend, targets or [], native_targets, spec)
    trainable = spec.num_layers * sum(lora_module_params(m, spec, rank) for m in plan.modules)
    per_rank = None
    if split:
        per_layer = sum(lora_module_params(m, spec, rank, tp, ep) for m in plan.modules)
        per_rank = [
            {
                "pp_rank": s,
                "tp_rank": t,
                **({"ep_rank": e} if ep > 1 else {}),
                "layers": len(layers),
                "trainable": len(layers) * per_layer,
            }
            for s, layers in enumerate(stage_layers(spec.num_layers, pp, num_layer_list))
            for t in range(tp)
            for e in range(ep)
        ]
    return ParamReport(
        backend=backend,
        model=spec.name,
        method="lora",
        total_params=total,
        trainable_params=trainable,
        low_param_ratio=low_param_ratio(trainable, total),
        peft_trainable_percent=100.0 * trainable / (total + trainable),
        exact=plan.exact,
        native_targets=list(plan.native_targets),
        note=plan.note,
        lora_rank=rank,
        per_rank_trainable=per_rank,
    )
