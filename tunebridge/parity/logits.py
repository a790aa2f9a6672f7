"""Prove a conversion with the frameworks' own forward passes: HF transformers, megatron-core, MindFormers."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..converters.formats import checkpoint_format, mcore as mcore_fmt
from ..errors import TunebridgeError
from ..model.spec import ModelSpec

# fp32 agreement required of a correct conversion (the field's checks are looser: cosine >= 0.98).
MAX_ABS = 1e-4
MIN_COSINE = 0.9999


def hf_logits(path: Path, input_ids: torch.Tensor, spec: ModelSpec | None = None) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True).eval()
    with torch.no_grad():
        return model(input_ids).logits.float()


def mcore_logits_from_dir(
    path: Path, input_ids: torch.Tensor, spec: ModelSpec, expert_parallel: bool = False
) -> torch.Tensor:
    """megatron-core's logits from a checkpoint directory. An expert-parallel checkpoint runs with its experts joined
    on tp x pp ranks (ep = 1), or with ``expert_parallel`` on its own tp x pp x ep ranks, each its rank file."""
    from ..backends.mindspeed_llm.megatron.forward import mcore_logits

    layout = mcore_fmt.McoreLayout(path)
    args = mcore_fmt.load_rank_file(layout.file(0, 0)).get("args")
    num_layer_list = mcore_fmt.saved_layer_list(args)
    divisible = getattr(args, "make_vocab_size_divisible_by", 1) if args is not None else 1
    stages = mcore_fmt.stages(spec, layout.pp, num_layer_list)
    shards: dict = {}
    for s in range(layout.pp):
        for t in range(layout.tp):
            states = [mcore_fmt.load_rank_file(layout.file(t, s, e))["model"] for e in range(layout.ep)]
            if expert_parallel:
                shards.update({(s, t, e): {k: v.float() for k, v in state.items()} for e, state in enumerate(states)})
            else:
                joined = mcore_fmt.join_expert_ranks(spec, states, len(stages[s]))
                shards[(s, t)] = {k: v.float() for k, v in joined.items()}
    return mcore_logits(spec, shards, input_ids, num_layer_list=num_layer_list, make_vocab_size_divisible_by=divisible)


def mindformers_logits(path: Path, input_ids: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    from ..backends.mindformers.bridge import call_mindspore

    ckpt = path if path.suffix == ".ckpt" else next(iter(sorted(path.glob("*.ckpt"))))
    with tempfile.TemporaryDirectory(prefix="tunebridge-verify-") as tmp:
        ids_path, out_path = Path(tmp) / "ids.npy", Path(tmp) / "logits.npy"
        np.save(ids_path, input_ids.numpy().astype(np.int32))
        call_mindspore(
            "backends.mindformers.ms.model",
            "logits",
            spec=spec.to_dict(),
            ckpt_path=str(ckpt.resolve()),
            input_ids_path=str(ids_path),
            out_path=str(out_path),
        )
        return torch.from_numpy(np.load(out_path))


def framework_logits(path: str | Path, fmt: str, spec: ModelSpec, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits of the checkpoint at ``path`` through its own framework."""
    return checkpoint_format(fmt).load("logits")(Path(path), input_ids, spec)


@dataclass
class Agreement:
    a: str
    b: str
    max_abs: float
    mean_abs: float
    cosine: float
    max_abs_limit: float = MAX_ABS
    cosine_limit: float = MIN_COSINE

    @property
    def passed(self) -> bool:
        return self.max_abs <= self.max_abs_limit and self.cosine >= self.cosine_limit

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> Agreement:
    if a.shape != b.shape:
        raise TunebridgeError(f"logit shapes differ: {name_a} {list(a.shape)} vs {name_b} {list(b.shape)}")
    diff = (a.double() - b.double()).abs()
    cos = torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0)
    return Agreement(name_a, name_b, float(diff.max()), float(diff.mean()), float(cos))


def verify(
    paths: list[tuple[str | Path, str]],
    spec: ModelSpec,
    seq_len: int = 16,
    batch: int = 2,
    seed: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> list[Agreement]:
    """Every pair of checkpoints (path, format) compared on the same random token ids; ``say`` hears what runs."""
    ids = torch.randint(0, spec.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(seed))
    logits = []
    for i, (p, fmt) in enumerate(paths, 1):
        framework = checkpoint_format(fmt).framework
        say(f"[{i}/{len(paths)}] logits of {p} through {framework}")
        logits.append((f"{fmt}:{Path(p).name} ({framework})", framework_logits(p, fmt, spec, ids)))
    return [compare(la, lb, na, nb) for i, (na, la) in enumerate(logits) for nb, lb in logits[i + 1 :]]
