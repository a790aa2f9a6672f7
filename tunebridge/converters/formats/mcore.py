"""Megatron-mcore checkpoints as MindSpeed-LLM writes and reads them.

    <dir>/latest_checkpointed_iteration.txt (MCORE_TRACKER)   "1"
    <dir>/iter_0000001/mp_rank_{tp:02d}[_{pp:03d}][_{ep:03d}]/model_optim_rng.pt   (the pp rank when pp > 1,
                                                                                    the ep rank when ep > 1)
        {"model": state dict (stage-local layer indices), "checkpoint_version": 3.0,
         "iteration": 1, "args": argparse.Namespace}

Files are read through :mod:`.torchzip`'s allow-listed unpickler: no pickled object runs code.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from ...errors import TunebridgeError
from ...model.dialects import MCORE
from ...model.families import family_of_model_type_hf, keys as config_keys, megatron_keys, model_type_hf
from ...model.partition import padded_vocab_size, parse_layer_list, stage_layers
from ...model.spec import ModelSpec
from . import MCORE_TRACKER
from .background import Background
from .torchzip import LazyTensor, TorchZipWriter, lazy_load

CHECKPOINT_VERSION = 3.0
ITERATION = 1
_RANK_DIR = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?(?:_(\d{3}))?$")


def rank_dir(tp_rank: int, pp_rank: int, pp: int, ep_rank: int = 0, ep: int = 1) -> str:
    """Megatron's rank directory: the pp rank appended when pp > 1, then the ep rank when ep > 1."""
    name = f"mp_rank_{tp_rank:02d}" if pp == 1 else f"mp_rank_{tp_rank:02d}_{pp_rank:03d}"
    return name if ep == 1 else f"{name}_{ep_rank:03d}"


def iteration_dir(root: Path, iteration: int = ITERATION) -> Path:
    return root / f"iter_{iteration:07d}"


def make_args(
    spec: ModelSpec,
    tp: int,
    pp: int,
    num_layer_list: list[int] | None,
    divisible_by: int,
    dtype: torch.dtype,
    ep: int = 1,
) -> argparse.Namespace:
    """The arguments a converted checkpoint carries: the model as Megatron's arguments (the family's Megatron
    table: what Megatron's ``load_args_from_checkpoint`` and MindSpeed-LLM's wrapper of it copy into a run's
    arguments, and what MindSpeed-LLM's ``convert_ckpt_v2.py`` mg->hf reads), the layout, and the family as
    MindSpeed-LLM's converters name it (``model_type_hf``)."""
    fam = spec.family_record
    return argparse.Namespace(
        **config_keys.write(megatron_keys(fam), spec),
        padded_vocab_size=padded_vocab_size(spec.vocab_size, tp, divisible_by),
        make_vocab_size_divisible_by=divisible_by,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=ep,
        num_layer_list=",".join(map(str, num_layer_list)) if num_layer_list else None,
        params_dtype=dtype,
        model_type_hf=model_type_hf(fam),
        iteration=ITERATION,
        **spec.to_generation_config(),
    )


def spec_from_args(args: argparse.Namespace, name: str) -> ModelSpec:
    """A ModelSpec from a checkpoint's args: MindSpeed-LLM's ``convert_ckpt_v2.py`` stores the HF config there
    (``model_type``, ``intermediate_size``, ...); tunebridge (and MindSpeed-LLM's converters) name the family in
    ``model_type_hf`` beside Megatron's fields. Args that name no family are refused, not guessed from."""
    fields = dict(vars(args))
    try:
        if "intermediate_size" in fields and "num_hidden_layers" in fields and "model_type" in fields:
            return ModelSpec.from_hf_dict(fields, name=name, source="checkpoint args")
        declared = fields.get("model_type_hf")
        fam = family_of_model_type_hf(str(declared), "convert_ckpt_v2.py") if declared else None
        if fam is None:
            raise ValueError(
                f"checkpoint args name no model family MindSpeed-LLM knows (model_type_hf "
                f"{declared!r}): pass the model (--model or --hf-config)"
            )
        if not fields.get("group_query_attention"):
            fields["num_query_groups"] = fields.get("num_attention_heads")
        return ModelSpec(
            name=name,
            family=fam.name,
            **config_keys.read(megatron_keys(fam), fields, "checkpoint args"),
            **{k: fields[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in fields},
        )
    except ValueError as e:
        raise TunebridgeError(
            f"{e}: pass the model (--model or --hf-config)" if "lacks" in str(e) else str(e)
        ) from None


def join_expert_ranks(spec: ModelSpec, states: list[dict], layers: int) -> dict:
    """The state dicts of one (tp, pp) rank's ep ranks (``layers`` layers in the stage) as that rank's state dict
    with ep = 1: each expert under its global index, every other tensor from ep rank 0 (each ep rank has a copy)."""
    ep = len(states)
    if ep == 1:
        return states[0]
    per_rank = spec.num_experts // ep
    rules = [r for r in MCORE.rules(spec) if r.per_expert]
    local = {r.format(j, e) for r in rules for j in range(layers) for e in range(per_rank)}
    joined = {k: v for k, v in states[0].items() if k not in local}
    for rank, state in enumerate(states):
        for rule in rules:
            for j in range(layers):
                for e in range(per_rank):
                    joined[rule.format(j, rank * per_rank + e)] = state[rule.format(j, e)]
    return joined


def saved_layer_list(args: argparse.Namespace | None) -> list[int] | None:
    """The ``num_layer_list`` a checkpoint's args record (None: even stages, or no args)."""
    return parse_layer_list(getattr(args, "num_layer_list", None))


def load_rank_file(path: Path) -> dict:
    """A model_optim_rng.pt through the allow-listed unpickler (:func:`lazy_load`), every tensor read (mapped
    copy-on-write)."""
    return _loaded(lazy_load(path))


def _loaded(obj):
    if isinstance(obj, LazyTensor):
        return obj.load()
    if isinstance(obj, dict):  # in place: keeps OrderedDict / defaultdict
        for key, value in obj.items():
            obj[key] = _loaded(value)
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_loaded(v) for v in obj)
    return obj


class McoreLayout:
    """Which rank files a checkpoint directory holds."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        latest = self.root / MCORE_TRACKER
        if not latest.exists():
            raise TunebridgeError(f"{self.root}: no {MCORE_TRACKER} (not an mcore checkpoint)")
        text = latest.read_text().strip()
        if not text.isdigit():
            raise TunebridgeError(f"{latest}: expected an iteration number, found {text!r}")
        self.iter_dir = iteration_dir(self.root, int(text))
        matches = [_RANK_DIR.match(p.name) for p in self.iter_dir.glob("mp_rank_*")] if self.iter_dir.is_dir() else []
        ranks = [m for m in matches if m]
        if not ranks:
            raise TunebridgeError(f"{self.iter_dir}: no mp_rank_* directories")
        self.tp = 1 + max(int(m.group(1)) for m in ranks)
        if any(m.group(3) for m in ranks):
            self.pp = 1 + max(int(m.group(2)) for m in ranks)
            self.ep = 1 + max(int(m.group(3)) for m in ranks)
        else:  # one rank number more: the pp rank, or the ep rank of a single-stage checkpoint (its args say)
            second = 1 + max(int(m.group(2) or 0) for m in ranks)
            self.pp, self.ep = second, 1
            if second > 1:
                first = min(ranks, key=lambda m: m.group(0)).group(0)
                args = lazy_load(self.iter_dir / first / "model_optim_rng.pt").get("args")
                if getattr(args, "expert_model_parallel_size", 1) == second:
                    self.pp, self.ep = 1, second
        for t in range(self.tp):
            for s in range(self.pp):
                for e in range(self.ep):
                    if not self.file(t, s, e).exists():
                        raise TunebridgeError(
                            f"{self.file(t, s, e)}: missing (tp={self.tp}, pp={self.pp}, ep={self.ep})"
                        )

    def file(self, tp_rank: int, pp_rank: int, ep_rank: int = 0) -> Path:
        return self.iter_dir / rank_dir(tp_rank, pp_rank, self.pp, ep_rank, self.ep) / "model_optim_rng.pt"


class RankFileWriter:
    """One rank's ``model_optim_rng.pt``, written tensor by tensor (see :class:`TorchZipWriter`)."""

    def __init__(
        self,
        root: Path,
        tp_rank: int,
        pp_rank: int,
        pp: int,
        iteration: int = ITERATION,
        background: Background | None = None,
        ep_rank: int = 0,
        ep: int = 1,
    ):
        self.path = iteration_dir(root, iteration) / rank_dir(tp_rank, pp_rank, pp, ep_rank, ep) / "model_optim_rng.pt"
        self.iteration = iteration
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = TorchZipWriter(self.path, background)
        self._model: dict = {}

    def add(self, name: str, t: torch.Tensor) -> None:
        self._model[name] = self._zip.add(t)

    def add_pieces(self, name: str, dtype: torch.dtype, shape: tuple[int, ...], pieces: list[torch.Tensor]) -> None:
        """A tensor given as the dim-0 pieces of its bytes (see :func:`tunebridge.model.layout.pack_shards`)."""
        self._model[name] = self._zip.add_pieces(dtype, shape, pieces)

    def finish(self, args: argparse.Namespace) -> Path:
        self._zip.finish(
            {"model": self._model, "checkpoint_version": CHECKPOINT_VERSION, "iteration": self.iteration, "args": args}
        )
        return self.path


def write_rank(
    root: Path,
    tp_rank: int,
    pp_rank: int,
    pp: int,
    state: dict[str, torch.Tensor],
    args: argparse.Namespace,
    iteration: int = ITERATION,
) -> Path:
    writer = RankFileWriter(root, tp_rank, pp_rank, pp, iteration)
    for name, t in state.items():
        writer.add(name, t)
    return writer.finish(args)


def write_latest(root: Path, iteration: int = ITERATION) -> None:
    (root / MCORE_TRACKER).write_text(str(iteration))


def stages(spec: ModelSpec, pp: int, num_layer_list: list[int] | None) -> list[range]:
    try:
        return stage_layers(spec.num_layers, pp, num_layer_list)
    except ValueError as e:
        raise TunebridgeError(str(e)) from None
