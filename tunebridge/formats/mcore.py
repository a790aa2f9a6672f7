"""Megatron-mcore checkpoints as MindSpeed-LLM writes and reads them.

    <dir>/latest_checkpointed_iteration.txt            "1"
    <dir>/iter_0000001/mp_rank_{tp:02d}[_{pp:03d}]/model_optim_rng.pt
        {"model": state dict (stage-local layer indices), "checkpoint_version": 3.0,
         "iteration": 1, "args": argparse.Namespace}

Files are read with ``torch.load(weights_only=True, mmap=True)`` and an allow-list holding only
``argparse.Namespace``: any other pickled object is refused.
"""
from __future__ import annotations

import argparse
import pickle
import re
from pathlib import Path

import torch

from ..errors import TunebridgeError
from ..layout import padded_vocab_size, stage_layers
from ..models import ModelSpec
from .background import Background
from .torchzip import TorchZipWriter

CHECKPOINT_VERSION = 3.0
ITERATION = 1
_RANK_DIR = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?$")


def rank_dir(tp_rank: int, pp_rank: int, pp: int) -> str:
    return f"mp_rank_{tp_rank:02d}" if pp == 1 else f"mp_rank_{tp_rank:02d}_{pp_rank:03d}"


def iteration_dir(root: Path, iteration: int = ITERATION) -> Path:
    return root / f"iter_{iteration:07d}"


def make_args(spec: ModelSpec, tp: int, pp: int, num_layer_list: list[int] | None, divisible_by: int,
              dtype: torch.dtype) -> argparse.Namespace:
    """The Megatron/MindSpeed-LLM arguments a converted checkpoint carries (read back by --use-checkpoint-args)."""
    return argparse.Namespace(
        num_layers=spec.num_layers, hidden_size=spec.hidden_size, ffn_hidden_size=spec.ffn_hidden_size,
        num_attention_heads=spec.num_heads, group_query_attention=spec.num_kv_heads < spec.num_heads,
        num_query_groups=spec.num_kv_heads, kv_channels=spec.head_dim, vocab_size=spec.vocab_size,
        padded_vocab_size=padded_vocab_size(spec.vocab_size, tp, divisible_by),
        make_vocab_size_divisible_by=divisible_by, tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp, num_layer_list=",".join(map(str, num_layer_list)) if num_layer_list else None,
        add_qkv_bias=spec.qkv_bias, add_dense_bias=spec.o_bias, add_bias_linear=False,
        untie_embeddings_and_output_weights=not spec.tied_embeddings, norm_epsilon=spec.norm_eps,
        rotary_base=spec.rope_theta, max_position_embeddings=spec.max_position_embeddings,
        position_embedding_type="rope", normalization="RMSNorm", swiglu=True, use_mcore_models=True,
        params_dtype=dtype, model_type_hf="llama2", iteration=ITERATION,
    )


def spec_from_args(args: argparse.Namespace, name: str) -> ModelSpec:
    """A ModelSpec from a checkpoint's args (vocab_size falls back to padded_vocab_size)."""
    try:
        family = "internlm" if getattr(args, "add_dense_bias", False) else (
            "qwen2" if getattr(args, "add_qkv_bias", False) else "llama")
        heads = args.num_attention_heads
        return ModelSpec(
            name=name, family=family, hf_model_type="qwen2" if family == "qwen2" else "llama",
            vocab_size=getattr(args, "vocab_size", None) or args.padded_vocab_size, hidden_size=args.hidden_size,
            num_layers=args.num_layers, num_heads=heads,
            num_kv_heads=(args.num_query_groups if getattr(args, "group_query_attention", False) else heads),
            ffn_hidden_size=args.ffn_hidden_size, head_dim=getattr(args, "kv_channels", None) or 0,
            qkv_bias=bool(getattr(args, "add_qkv_bias", False)), o_bias=bool(getattr(args, "add_dense_bias", False)),
            tied_embeddings=not getattr(args, "untie_embeddings_and_output_weights", True),
            rope_theta=float(getattr(args, "rotary_base", 10000.0)),
            norm_eps=float(getattr(args, "norm_epsilon", 1e-6)),
            max_position_embeddings=getattr(args, "max_position_embeddings", 4096))
    except AttributeError as e:
        raise TunebridgeError(f"checkpoint args lack {e.name}: pass the model (--model or --hf-config)") from None


def load_rank_file(path: Path) -> dict:
    """A model_optim_rng.pt, memory-mapped, refusing any pickled object but argparse.Namespace."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        raise TunebridgeError(f"{path}: refused to unpickle: {str(e).splitlines()[0]} (only tensors and "
                              f"argparse.Namespace are allowed)") from None
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: missing") from None
    except Exception as e:  # noqa: BLE001 - a truncated/corrupt file is the user's input problem
        raise TunebridgeError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


class McoreLayout:
    """Which rank files a checkpoint directory holds."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        latest = self.root / "latest_checkpointed_iteration.txt"
        if not latest.exists():
            raise TunebridgeError(f"{self.root}: no latest_checkpointed_iteration.txt (not an mcore checkpoint)")
        text = latest.read_text().strip()
        if not text.isdigit():
            raise TunebridgeError(f"{latest}: expected an iteration number, found {text!r}")
        self.iter_dir = iteration_dir(self.root, int(text))
        ranks = [_RANK_DIR.match(p.name) for p in self.iter_dir.glob("mp_rank_*")] if self.iter_dir.is_dir() else []
        ranks = [m for m in ranks if m]
        if not ranks:
            raise TunebridgeError(f"{self.iter_dir}: no mp_rank_* directories")
        self.tp = 1 + max(int(m.group(1)) for m in ranks)
        self.pp = 1 + max(int(m.group(2) or 0) for m in ranks)
        for t in range(self.tp):
            for s in range(self.pp):
                if not self.file(t, s).exists():
                    raise TunebridgeError(f"{self.file(t, s)}: missing (tp={self.tp}, pp={self.pp})")

    def file(self, tp_rank: int, pp_rank: int) -> Path:
        return self.iter_dir / rank_dir(tp_rank, pp_rank, self.pp) / "model_optim_rng.pt"


class RankFileWriter:
    """One rank's ``model_optim_rng.pt``, written tensor by tensor (see :class:`TorchZipWriter`)."""

    def __init__(self, root: Path, tp_rank: int, pp_rank: int, pp: int, iteration: int = ITERATION,
                 background: Background | None = None):
        self.path = iteration_dir(root, iteration) / rank_dir(tp_rank, pp_rank, pp) / "model_optim_rng.pt"
        self.iteration = iteration
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = TorchZipWriter(self.path, background)
        self._model: dict = {}

    def add(self, name: str, t: torch.Tensor) -> None:
        self._model[name] = self._zip.add(t)

    def add_pieces(self, name: str, dtype: torch.dtype, shape: tuple[int, ...], pieces: list[torch.Tensor]) -> None:
        """A tensor given as the dim-0 pieces of its bytes (see :func:`tunebridge.layout.pack_shards`)."""
        self._model[name] = self._zip.add_pieces(dtype, shape, pieces)

    def finish(self, args: argparse.Namespace) -> Path:
        self._zip.finish({"model": self._model, "checkpoint_version": CHECKPOINT_VERSION, "iteration": self.iteration,
                          "args": args})
        return self.path


def write_rank(root: Path, tp_rank: int, pp_rank: int, pp: int, state: dict[str, torch.Tensor],
               args: argparse.Namespace, iteration: int = ITERATION) -> Path:
    writer = RankFileWriter(root, tp_rank, pp_rank, pp, iteration)
    for name, t in state.items():
        writer.add(name, t)
    return writer.finish(args)


def write_latest(root: Path, iteration: int = ITERATION) -> None:
    (root / "latest_checkpointed_iteration.txt").write_text(str(iteration))


def stages(spec: ModelSpec, pp: int, num_layer_list: list[int] | None) -> list[range]:
    try:
        return stage_layers(spec.num_layers, pp, num_layer_list)
    except ValueError as e:
        raise TunebridgeError(str(e)) from None
