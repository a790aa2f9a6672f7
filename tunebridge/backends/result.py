"""What every backend's run returns: one loss-curve type and the facts needed to compare runs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class StepRecord:
    step: int  # 1-based optimizer step
    loss: float  # as the stack reports it (see the backend's loss averaging)
    lr: float | None  # rate used by this step's update (None: the log did not print it)
    grad_norm: float | None = None
    tokens: int | None = None  # supervised tokens in this step's global batch
    loss_scale: float | None = None
    skipped: bool | None = None  # update skipped (fp16 overflow, Megatron's skipped iterations)
    # a mixture of experts: Megatron's logged load_balancing_loss (aux / coeff over MoE layers and micro-batches;
    # trained with weight coeff, not part of ``loss``), None without one
    load_balancing_loss: float | None = None

    def to_dict(self) -> dict:
        """The record's fields; load_balancing_loss only when the run has one (other runs' records as before)."""
        d = asdict(self)
        if d["load_balancing_loss"] is None:
            del d["load_balancing_loss"]
        return d


@dataclass
class RunResult:
    backend: str
    steps: list[StepRecord] = field(default_factory=list)
    trainable_params: int | None = None
    total_params: int | None = None
    checkpoints: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    step_time_s: float | None = None
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: str = ""  # the file the steps were read from, when parsed from a log
    executor: str = ""  # what trained, when the stack's own program did (e.g. MindFormers' Trainer)
    evaluation: dict = field(default_factory=dict)  # the stack's own evaluation, per task (accuracy: a fraction)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = [s.to_dict() for s in self.steps]
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        d["steps"] = [StepRecord(**s) for s in d.get("steps", [])]
        return cls(**d)
