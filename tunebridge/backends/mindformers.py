"""The MindFormers backend: a recipe trained with MindFormers' own LlamaForCausalLM + pet_config LoRA on CPU.

The run happens in ``.venv-mindspore`` (``tunebridge.ms.train``) through the bridge; this side hands it the
sample order of every step (computed once, so all backends see the same batches) and turns the answer into a
:class:`RunResult`. Its semantics, and where they come from in MindFormers' sources, are in ``tunebridge.ms.train``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from ..bridge import call_mindspore
from ..errors import TunebridgeError
from ..models import ModelSpec
from ..train.config import TrainConfig
from .result import RunResult, StepRecord


def train_mindformers(spec: ModelSpec, weights_ckpt: Path, data_mindrecord: Path, batches: list[list[int]],
                      cfg: TrainConfig, out: Path, init_adapter_ckpt: Path | None = None, progress: bool = True,
                      log: Callable[[str], None] | None = None, timeout: float | None = None) -> RunResult:
    """Train ``spec`` from ``weights_ckpt`` (a MindFormers .ckpt) on the MindRecord rows named by ``batches``.

    ``batches[k]`` lists the row indices (file order) of step k's global batch; ``out`` receives
    ``worker_0.log`` (MFLossMonitor lines), the trained LoRA under ``checkpoint_trainable/rank_0/`` and
    ``result.json``. ``log`` receives the MindSpore process's stderr lines (one progress line per step) when
    it ends; with ``progress`` and no ``log`` they go to stderr.
    """
    out = Path(out)
    for name, path in (("weights_ckpt", weights_ckpt), ("data_mindrecord", data_mindrecord)):
        if not Path(path).exists():
            raise TunebridgeError(f"{name}: {path} does not exist")
    if init_adapter_ckpt is not None and not Path(init_adapter_ckpt).exists():
        raise TunebridgeError(f"init_adapter_ckpt: {init_adapter_ckpt} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    if progress and log is None:
        log = _to_stderr
    value = call_mindspore(
        "ms.train", "train", timeout=timeout, log=log,
        spec=spec.to_dict(), weights_ckpt=str(Path(weights_ckpt).resolve()),
        data_mindrecord=str(Path(data_mindrecord).resolve()), batches=[list(map(int, b)) for b in batches],
        cfg=cfg.to_dict(), out=str(out.resolve()),
        init_adapter_ckpt=str(Path(init_adapter_ckpt).resolve()) if init_adapter_ckpt else None, progress=progress)
    value["steps"] = [StepRecord(**s) for s in value["steps"]]
    result = RunResult(**value)
    result.save(out / "result.json")
    return result


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)
