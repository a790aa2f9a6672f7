"""The recipe: one fine-tuning job as YAML, validated with every problem reported at once.

Each problem reads ``recipe.yaml:LINE:COL: dotted.field.path: message; hint: ...``. Structure and
types are checked by pydantic (strict, no unknown keys); what depends on the model (parallel layout
against heads and layers, LoRA targets against the canonical projections) is checked afterwards.
"""

from __future__ import annotations

import inspect
import math
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from ..backends.stacks import STACK_NAMES, get_stack
from ..data.readers import check_map_keys
from ..data.spec import DataSpec
from ..data.templates import TEMPLATES
from ..data.tokenizer import EMBEDDED_VOCAB
from ..data.transforms import TRANSFORMS
from ..errors import TunebridgeError, did_you_mean
from ..model.accounting import ParamReport, count, expand_targets, native_name
from ..model.catalogue import CATALOGUE
from ..model.dialects import get_dialect
from ..model.partition import ep_problem
from ..model.spec import PROJECTIONS, ModelSpec

CANONICAL_TARGETS = (*PROJECTIONS, "all-linear")
# A recipe's name becomes file names (render, run): one path component of plain characters.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class RecipeError(TunebridgeError):
    """All problems of one recipe file, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        # the first problem on the error line, the others below it
        more = f" ({len(problems) - 1} more below)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more + "".join(f"\n  {p}" for p in problems[1:]))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModelRef(_Strict):
    arch: str | None = None
    hf_config: str | None = None
    weights: str | None = None  # an HF model directory to fine-tune (relative to the recipe file)


class LoraSettings(_Strict):
    rank: int
    alpha: int = 16
    dropout: float = 0.0
    targets: list[str] = Field(default_factory=lambda: ["q", "v"])
    native_targets: dict[str, list[str]] | None = None


class Finetune(_Strict):
    method: Literal["lora", "full"]
    lora: LoraSettings | None = None


class Optimizer(_Strict):
    type: Literal["adamw"] = "adamw"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    # Adam's bias correction: None = each stack's own (torch and Megatron: on; MindSpore's AdamWeightDecay: off)
    bias_correction: bool | None = None


class Train(_Strict):
    epochs: int = 1
    global_batch_size: int = 8
    micro_batch_size: int = 1
    seq_length: int = 2048
    lr: float = 1e-5
    min_lr: float = 0.0
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.0
    optimizer: Optimizer = Field(default_factory=Optimizer)
    clip_grad: float = 1.0
    seed: int = 0
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    max_steps: int | None = None
    # warm-up length: None = each stack's own (MindFormers floors ratio x steps, Megatron keeps it fractional)
    warmup_rounding: Literal["megatron", "mindformers"] | None = None
    # loss of a global batch: None = each stack's own (per micro-batch token mean, averaged; MindFormers on one
    # card: the token mean of the whole global batch, trained as one pass); token = over all its tokens
    loss_average: Literal["micro-batch", "token"] | None = None
    # a mixture of experts' auxiliary load-balancing loss (Megatron's --moe-aux-loss-coeff, per MoE layer, trained on
    # every stack): None = MoE_AUX_LOSS_COEFF on a mixture of experts; refused on a dense model
    moe_aux_loss_coeff: float | None = None


# What MindSpeed-LLM's qwen3_moe tune scripts train with (--moe-aux-loss-coeff 0.001), and Qwen3-MoE's own
# router_aux_loss_coef in its HF config: the objective a user of the rendered scripts gets unless the recipe says.
MOE_AUX_LOSS_COEFF = 0.001


def moe_aux_loss_coeff(recipe: Recipe) -> float:
    """The auxiliary load-balancing loss coefficient ``recipe`` trains with (0 on a dense model)."""
    if not recipe.spec.num_experts:
        return 0.0
    coeff = recipe.train.moe_aux_loss_coeff
    return MOE_AUX_LOSS_COEFF if coeff is None else coeff


class Parallel(_Strict):
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1  # expert-parallel ranks (Megatron's --expert-model-parallel-size), carved out of dp
    num_layer_list: list[int] | None = None
    sequence_parallel: bool = False
    make_vocab_size_divisible_by: int = 1


class ParityTolerances(_Strict):
    """Loss-curve tolerances (defaults: the MindFormers migration standard); a check passes on rel or abs."""

    first_rel: float = 0.005
    first_abs: float = 0.005
    mean_rel: float = 0.01
    mean_abs: float = 0.01
    grad_norm_mean_rel: float = 0.10


class Recipe(_Strict):
    name: str
    model: ModelRef
    finetune: Finetune
    train: Train = Field(default_factory=Train)
    parallel: Parallel = Field(default_factory=Parallel)
    data: DataSpec | None = None
    evaluate: list[dict[str, Any]] | None = None
    parity: ParityTolerances = Field(default_factory=ParityTolerances)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        return self._source

    @cached_property
    def spec(self) -> ModelSpec:
        if self.model.arch:
            return CATALOGUE[self.model.arch]
        assert self.model.hf_config is not None, "validation requires model.arch or model.hf_config"
        return ModelSpec.from_hf_config(_resolve(self._source, self.model.hf_config))

    def path(self, relative: str) -> Path:
        """A path from the recipe, resolved against the recipe file's directory."""
        return _resolve(self._source, relative)

    def tokenizer(self, override: str | Path | None = None) -> Path | None:
        """The tokenizer directory the recipe's data is encoded with (None: the embedded tokenizer): ``override``,
        else data.tokenizer, else model.weights when it holds one; the embedded one only for a model of its 512
        ids. A catalogue model of another vocabulary without its own tokenizer is refused: its ids would be
        the embedded tokenizer's, not the model's."""
        if override is not None:
            return Path(override)
        if self.data is not None and self.data.tokenizer:
            return self.path(self.data.tokenizer)
        if self.model.weights:
            weights = self.path(self.model.weights)
            if any((weights / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
                return weights
        if self.spec.vocab_size != EMBEDDED_VOCAB:
            raise TunebridgeError(
                f"{self.source}: model {self.spec.name} has a vocabulary of "
                f"{self.spec.vocab_size:,} ids and the recipe names no tokenizer: set "
                f"data.tokenizer to the model's tokenizer directory or model.weights to its HF "
                f"directory (or pass --tokenizer DIR); the embedded {EMBEDDED_VOCAB}-id tokenizer "
                f"is for the tiny models"
            )
        return None

    def load_tokenizer(self, override: str | Path | None = None) -> tuple[Path | None, Any]:
        """:meth:`tokenizer`'s directory and the tokenizer loaded from it, refused when it has more ids than
        the model's vocabulary (its ids would index past the embedding)."""
        from ..data.tokenizer import load_tokenizer

        path = self.tokenizer(override)
        tok = load_tokenizer(path)
        if len(tok) > self.spec.vocab_size:
            raise TunebridgeError(
                f"{path or 'the embedded tokenizer'}: {len(tok):,} ids, more than model "
                f"{self.spec.name}'s vocabulary of {self.spec.vocab_size:,}: not this model's "
                f"tokenizer"
            )
        return path, tok

    def native_targets(self, backend: str) -> list[str] | None:
        lora = self.finetune.lora
        return (lora.native_targets or {}).get(backend) if lora else None

    def param_report(self, backend: str) -> ParamReport:
        """Exact total/trainable parameters of this recipe on ``backend``; what the stack cannot express, or the
        accounting cannot count (LoRA on a mixture of experts' experts), is one error naming the field."""
        if problem := get_stack(backend).problem(self.spec):
            raise TunebridgeError(f"{self.source}: model: {problem}")
        try:
            return self._count(backend)
        except ValueError as e:
            raise TunebridgeError(f"{self.source}: finetune.lora.targets: {e}") from None

    def _count(self, backend: str) -> ParamReport:
        lora = self.finetune.lora
        p = self.parallel
        return count(
            self.spec,
            backend,
            method=self.finetune.method,
            rank=lora.rank if lora else 0,
            targets=list(lora.targets) if lora else None,
            native_targets=self.native_targets(backend),
            tp=p.tp,
            pp=p.pp,
            num_layer_list=p.num_layer_list,
            make_vocab_size_divisible_by=p.make_vocab_size_divisible_by,
            ep=p.ep,
        )


def _resolve(source: Path | None, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or source is None else source.parent / p


# --- loading --------------------------------------------------------------------------------


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise TunebridgeError(f"{path}: is a directory, not a recipe file (give the recipe's .yaml)") from None
    except OSError as e:
        raise TunebridgeError(f"{path}: cannot read the recipe ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise TunebridgeError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_recipe(text, source=path)


def parse_recipe(text: str, source: str | Path = "<string>") -> Recipe:
    source_path = Path(source) if str(source) != "<string>" else None
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else str(source)
        raise RecipeError([f"{where}: not valid YAML: {e.problem or e.context}"]) from None
    if not isinstance(root, dict):
        raise RecipeError([f"{source}:1:1: a recipe is a mapping of keys (name, model, finetune, ...)"])
    try:
        recipe = Recipe.model_validate(root)
    except ValidationError as e:
        raise RecipeError(_format_all(source, root, _structural_problems(e))) from None
    recipe._source = source_path
    problems = _semantic_problems(recipe, source_path)
    if problems:
        raise RecipeError(_format_all(source, root, problems))
    return recipe


def recipe_from_dict(data: dict, source: Path | None, label: str) -> Recipe:
    """A recipe made from a mapping (a sweep point), with every check of :func:`parse_recipe`; each problem
    reads ``LABEL: dotted.field: message``."""
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems = _structural_problems(e)
    else:
        recipe._source = source
        problems = _semantic_problems(recipe, source)
    if problems:
        raise RecipeError(
            [f"{label}: {_dotted(path)}: {msg}" + (f"; hint: {hint}" if hint else "") for path, msg, hint in problems]
        )
    return recipe


# A problem before formatting: (field path, message, hint or "")
Problem = tuple[tuple, str, str]


def _did_you_mean(word: str, choices) -> str:
    near = did_you_mean(word, choices)
    return f"did you mean {near!r}?" if near else f"expected one of: {', '.join(map(str, choices))}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc``."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _structural_problems(err: ValidationError) -> list[Problem]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in ("str", "int", "list[str]")))
        typ, hint = e["type"], ""
        if typ == "extra_forbidden":
            parent = _model_at(loc[:-1])
            msg = "unknown key"
            if parent is not None:
                hint = _did_you_mean(str(loc[-1]), list(parent.model_fields))
        elif typ == "missing":
            msg = "required key is missing"
        elif typ == "literal_error":
            msg = f"{e['input']!r} is not allowed"
            hint = _did_you_mean(e["input"], _literal_choices(e["ctx"]["expected"]))
        else:
            msg = f"{e['msg'].lower()} (got {type(e['input']).__name__} {e['input']!r})"
        out.append((loc, msg, hint))
    return out


def _literal_choices(expected: str) -> list[str]:
    return [c.strip().strip("'\"") for c in expected.replace(" or ", ", ").split(",")]


def _framework_target_hint(target: str) -> str | None:
    for backend in STACK_NAMES:
        for module in get_dialect(backend).lora_modules:
            if native_name(module) == target:
                if len(module.covers) == 1:
                    return f"{target!r} is {backend}'s name for canonical target {module.covers[0]!r}"
                return (
                    f"{target!r} is {backend}'s fused module covering {list(module.covers)}: use targets "
                    f"{list(module.covers)} or finetune.lora.native_targets: {{{backend}: [{target}]}}"
                )
    return None


def _nonfinite(model: BaseModel, path: tuple = ()) -> list[Problem]:
    """Every float field that is NaN or infinite (YAML's .nan / .inf pass a float type check)."""
    out: list[Problem] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out += _nonfinite(value, (*path, name))
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(((*path, name), f"must be a finite number (got {value})", ""))
    return out


def _semantic_problems(r: Recipe, source: Path | None) -> list[Problem]:
    out: list[Problem] = _nonfinite(r)
    if not NAME.fullmatch(r.name):
        out.append(
            (
                ("name",),
                f"{r.name!r} is not a plain name: it names files and directories",
                "letters, digits, '.', '_', '+', '-', starting with a letter or digit (no '/')",
            )
        )
    if r.model.arch and r.model.hf_config:
        out.append((("model",), "give either arch or hf_config, not both", ""))
    elif not r.model.arch and not r.model.hf_config:
        out.append((("model",), "give arch (a catalogue name) or hf_config (a config.json or model dir)", ""))
    elif r.model.arch and r.model.arch not in CATALOGUE:
        out.append((("model", "arch"), f"unknown model {r.model.arch!r}", _did_you_mean(r.model.arch, CATALOGUE)))
    elif r.model.hf_config:
        path = _resolve(source, r.model.hf_config)
        if not (path / "config.json" if path.is_dir() else path).is_file():
            out.append((("model", "hf_config"), f"{path}: no config.json there", ""))
        else:
            try:
                _ = r.spec
            except ValueError as e:
                out.append((("model", "hf_config"), str(e), ""))

    if r.model.weights is not None and not (_resolve(source, r.model.weights) / "config.json").is_file():
        out.append((("model", "weights"), f"{_resolve(source, r.model.weights)}: not an HF model directory", ""))
    ft = r.finetune
    if ft.method == "lora" and ft.lora is None:
        out.append((("finetune",), "method lora needs a lora: {rank, alpha, dropout, targets} section", ""))
    if ft.method == "full" and ft.lora is not None:
        out.append(
            (
                ("finetune", "lora"),
                "a lora section is given but method is full",
                "set method: lora, or remove the lora section",
            )
        )
    if ft.lora is not None:
        out += _lora_problems(ft.lora)
        if not any(path[0] == "model" for path, _, _ in out):
            out += _rank_problems(ft.lora, r.spec)

    t = r.train
    for name in ("epochs", "global_batch_size", "micro_batch_size", "seq_length"):
        if getattr(t, name) <= 0:
            out.append((("train", name), "must be > 0", ""))
    if t.max_steps is not None and t.max_steps <= 0:
        out.append((("train", "max_steps"), "must be > 0", ""))
    if t.lr <= 0:
        out.append((("train", "lr"), "must be > 0", ""))
    if t.min_lr < 0 or t.min_lr > t.lr:
        out.append((("train", "min_lr"), f"must be between 0 and lr ({t.lr})", ""))
    if not 0 <= t.warmup_ratio < 1:
        out.append((("train", "warmup_ratio"), "must be in [0, 1)", ""))
    if t.clip_grad < 0:
        out.append((("train", "clip_grad"), "must be >= 0 (0 disables clipping)", ""))
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(t.optimizer, name) < 1:
            out.append((("train", "optimizer", name), "must be in [0, 1)", ""))
    p = r.parallel
    for name in ("tp", "pp", "dp", "ep", "make_vocab_size_divisible_by"):
        if getattr(p, name) <= 0:
            out.append((("parallel", name), "must be > 0", ""))
    if p.dp > 0 and t.micro_batch_size > 0 and t.global_batch_size % (t.micro_batch_size * p.dp):
        out.append(
            (
                ("train", "global_batch_size"),
                f"{t.global_batch_size} is not a multiple of micro_batch_size x dp = {t.micro_batch_size} x {p.dp}",
                "",
            )
        )
    if not any(path[0] == "model" for path, _, _ in out):
        out += _layout_problems(r.spec, p)
        out += _expert_problems(r.spec, p, t)
    if r.data is not None:
        out += _data_problems(r.data, source)
    return out


def _data_problems(d: DataSpec, source: Path | None) -> list[Problem]:
    out: list[Problem] = []
    if d.template is not None and d.template not in TEMPLATES:
        out.append((("data", "template"), f"unknown template {d.template!r}", _did_you_mean(d.template, TEMPLATES)))
    if d.train is not None and not _resolve(source, d.train.path).is_file():
        out.append((("data", "train", "path"), f"{_resolve(source, d.train.path)}: no such file", ""))
    if d.tokenizer is not None and not _resolve(source, d.tokenizer).is_dir():
        out.append((("data", "tokenizer"), f"{_resolve(source, d.tokenizer)}: no such tokenizer directory", ""))
    if d.train is not None and d.train.map_keys is not None:
        try:
            check_map_keys(d.train.map_keys, d.train.format)
        except TunebridgeError as e:
            out.append((("data", "train", "map_keys"), str(e), ""))
    for i, step in enumerate(d.transforms):
        if len(step) != 1:
            out.append(
                (("data", "transforms", i), "each transform is a one-key mapping like {prefix: {text: ...}}", "")
            )
            continue
        (name,) = step
        if name not in TRANSFORMS:
            out.append(
                (("data", "transforms", i, name), f"unknown transform {name!r}", _did_you_mean(name, TRANSFORMS))
            )
        else:
            out += _transform_problems(("data", "transforms", i, name), name, step[name] or {})
    if not 0 <= d.validation_split < 1:
        out.append((("data", "validation_split"), "must be in [0, 1)", ""))
    return out


def _transform_problems(at: tuple, name: str, options: dict) -> list[Problem]:
    """Options the transform does not take (they would be ignored) and counts that are not positive integers."""
    params = inspect.signature(TRANSFORMS[name]).parameters
    known = [p for p, v in params.items() if p not in ("records", "seed") and v.kind is not v.VAR_KEYWORD]
    out: list[Problem] = []
    for key in options:
        if key not in known:
            out.append(((*at, key), f"{name} takes no option {key!r}", _did_you_mean(key, known)))
    counts = [((*at, "n"), options.get("n"))]
    counts += [
        ((*at, "subsets", j, "n"), s.get("n"))
        for j, s in enumerate(options.get("subsets") or [])
        if isinstance(s, dict)
    ]
    for where, n in counts:
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n <= 0):
            out.append((where, f"must be a positive number of records (got {n!r})", ""))
    return out


def _rank_problems(lora: LoraSettings, spec: ModelSpec) -> list[Problem]:
    """A LoRA rank above a target's smaller side is not low-rank: more parameters than the matrix it adapts."""
    if lora.rank <= 0 or not all(t in CANONICAL_TARGETS for t in lora.targets):
        return []
    sides = {t: min(spec.shape(t)[-2:]) for t in spec.adapted(expand_targets(list(lora.targets)))}
    if not sides:
        return []
    target, side = min(sides.items(), key=lambda item: item[1])
    if lora.rank > side:
        return [
            (
                ("finetune", "lora", "rank"),
                f"{lora.rank} exceeds {spec.name}'s {target} projection's smaller "
                f"side {side} ({' x '.join(map(str, spec.shape(target)[-2:]))}): a LoRA of this rank is not low-rank",
                f"rank at most {side} for these targets",
            )
        ]
    return []


def _lora_problems(lora: LoraSettings) -> list[Problem]:
    out: list[Problem] = []
    if lora.rank <= 0:
        out.append((("finetune", "lora", "rank"), "must be > 0", ""))
    if lora.alpha <= 0:
        out.append((("finetune", "lora", "alpha"), "must be > 0", ""))
    if not 0 <= lora.dropout < 1:
        out.append((("finetune", "lora", "dropout"), "must be in [0, 1)", ""))
    if not lora.targets:
        out.append(
            (
                ("finetune", "lora", "targets"),
                "at least one target is needed",
                f"canonical targets: {', '.join(CANONICAL_TARGETS)}",
            )
        )
    for i, target in enumerate(lora.targets):
        if target not in CANONICAL_TARGETS:
            hint = _framework_target_hint(target) or _did_you_mean(target, CANONICAL_TARGETS)
            out.append((("finetune", "lora", "targets", i), f"{target!r} is not a canonical target", hint))
    for backend, names in (lora.native_targets or {}).items():
        if backend not in STACK_NAMES:
            out.append(
                (
                    ("finetune", "lora", "native_targets", backend),
                    f"unknown backend {backend!r}",
                    _did_you_mean(backend, STACK_NAMES),
                )
            )
            continue
        known = [native_name(m) for m in get_dialect(backend).lora_modules]
        for i, name in enumerate(names):
            if name not in known:
                out.append(
                    (
                        ("finetune", "lora", "native_targets", backend, i),
                        f"{name!r} is not a {backend} LoRA module",
                        _did_you_mean(name, known),
                    )
                )
    return out


def _layout_problems(spec: ModelSpec, p: Parallel) -> list[Problem]:
    out: list[Problem] = []
    if p.tp > 0:
        if spec.num_kv_heads % p.tp:
            out.append(
                (
                    ("parallel", "tp"),
                    f"tp {p.tp} does not divide {spec.name}'s {spec.num_kv_heads} KV heads "
                    f"(query groups): checkpoints split whole groups over TP ranks",
                    _divisors_hint(spec.num_kv_heads) + "; use pp (with num_layer_list) for more devices",
                )
            )
        elif spec.num_heads % p.tp:
            out.append(
                (
                    ("parallel", "tp"),
                    f"tp {p.tp} does not divide {spec.name}'s {spec.num_heads} heads",
                    _divisors_hint(spec.num_heads),
                )
            )
    if p.num_layer_list is not None:
        if len(p.num_layer_list) != p.pp:
            out.append((("parallel", "num_layer_list"), f"has {len(p.num_layer_list)} entries but pp is {p.pp}", ""))
        elif sum(p.num_layer_list) != spec.num_layers or min(p.num_layer_list) <= 0:
            out.append(
                (
                    ("parallel", "num_layer_list"),
                    f"entries sum to {sum(p.num_layer_list)}, {spec.name} has {spec.num_layers} layers",
                    "each stage needs at least one layer and the entries must add up to the layer count",
                )
            )
    elif p.pp > 0 and spec.num_layers % p.pp:
        out.append(
            (
                ("parallel", "pp"),
                f"pp {p.pp} does not divide {spec.name}'s {spec.num_layers} layers",
                "give parallel.num_layer_list with one layer count per stage",
            )
        )
    return out


def _expert_problems(spec: ModelSpec, p: Parallel, t: Train) -> list[Problem]:
    """Megatron core_v0.12.1's rules for a mixture of experts (MindSpeed-LLM 2.3.0 and master; megatron-core
    0.16.1 keeps the first): its ranks are tp x ep x pp blocks of the tp x pp x dp world (expert tp = tp, so ep
    divides dp); expert parallelism refuses fp16; MoE training with tp > 1 needs sequence parallelism. The
    load-balancing loss exists only with experts."""
    out: list[Problem] = []
    if t.moe_aux_loss_coeff is not None:
        if not spec.num_experts:
            out.append(
                (
                    ("train", "moe_aux_loss_coeff"),
                    f"{spec.name} is a dense model: it has no router whose load-balancing loss this would weigh",
                    "remove train.moe_aux_loss_coeff",
                )
            )
        elif t.moe_aux_loss_coeff < 0:
            out.append((("train", "moe_aux_loss_coeff"), "must be >= 0 (0: no load-balancing loss)", ""))
    if p.ep > 1:
        if problem := ep_problem(spec, p.ep):
            out.append((("parallel", "ep"), problem, ""))
        elif p.dp > 0 and p.dp % p.ep:
            out.append(
                (
                    ("parallel", "ep"),
                    f"ep {p.ep} does not divide dp {p.dp}: Megatron groups the tp x pp x dp ranks into "
                    f"tp x ep x pp expert blocks",
                    "make dp a multiple of ep",
                )
            )
        if t.dtype == "fp16":
            out.append((("parallel", "ep"), "Megatron's expert parallelism refuses fp16 training", "use bf16"))
    if spec.num_experts and p.tp > 1 and not p.sequence_parallel:
        out.append(
            (
                ("parallel", "sequence_parallel"),
                f"{spec.name} is a mixture of experts: MoE training with tp {p.tp} needs sequence parallelism "
                f"(MindSpeed-LLM's MoE layer refuses it without)",
                "set parallel.sequence_parallel: true",
            )
        )
    return out


def _divisors_hint(n: int) -> str:
    return "tp must be one of " + ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


# --- positions ----------------------------------------------------------------------------


def _position(root: Any, path: tuple) -> tuple[int, int]:
    """1-based line and column of the deepest node of ``path`` present in the YAML tree."""
    line, col = 0, 0
    node = root
    for part in path:
        if isinstance(node, CommentedMap) and part in node:
            line, col = node.lc.key(part)
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = node.lc.item(part)
            node = node[part]
        else:
            break
    return line + 1, col + 1


def _dotted(path: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[") or "(top)"


def _format_all(source, root, problems: list[Problem]) -> list[str]:
    """Problems as ``file:line:col: field.path: message; hint: ...``, in file order."""
    out = []
    for path, msg, hint in problems:
        line, col = _position(root, path)
        text = f"{source}:{line}:{col}: {_dotted(path)}: {msg}" + (f"; hint: {hint}" if hint else "")
        out.append(((line, col), text))
    return [text for _, text in sorted(out, key=lambda x: x[0])]
