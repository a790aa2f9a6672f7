"""Run a stack's rendered scripts as stages, one after another, on the host that has the stack.

    out/scripts/<the rendered scripts>      out/logs/<stage>.log      out/stages.json

Each stage is one script, run with ``bash`` in the stack's checkout with the run's paths in its environment;
its output goes to its own log. ``stages.json`` holds every stage's state (``pending``, ``running``, ``done``,
``failed``) with its exit code and times, written after every change. The first failing stage stops the run
with the last lines of its log; ``resume`` starts again at the first stage not ``done``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TunebridgeError
from ..io.atomic import atomic_file

STATUS_FILE = "stages.json"
TAIL_LINES = 20


@dataclass(frozen=True)
class Stage:
    name: str
    script: str  # file name in out/scripts


@dataclass
class StageState:
    name: str
    script: str
    status: str = "pending"
    exit_code: int | None = None
    started: float | None = None
    seconds: float | None = None
    log: str = ""


def _save(out: Path, states: list[StageState]) -> None:
    with atomic_file(out / STATUS_FILE) as f:
        json.dump([asdict(s) for s in states], f, indent=2)
        f.write("\n")


def load_states(out: Path) -> list[StageState]:
    path = Path(out) / STATUS_FILE
    try:
        return [StageState(**s) for s in json.loads(path.read_text(encoding="utf-8"))]
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no stage status to resume from (run without --resume first)") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise TunebridgeError(f"{path}: not a stage status file ({e})") from None


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def run_stages(
    stages: list[Stage], out: Path, cwd: Path, env: dict[str, str], resume: bool = False, echo=print
) -> list[StageState]:
    """Run ``stages`` (their scripts are in ``out/scripts``) in ``cwd``; stop at the first failure."""
    out = Path(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    if resume:
        states = load_states(out)
        if [(s.name, s.script) for s in states] != [(s.name, s.script) for s in stages]:
            raise TunebridgeError(
                f"{out / STATUS_FILE}: its stages {[s.name for s in states]} are not this run's "
                f"{[s.name for s in stages]}"
            )
    else:
        states = [StageState(s.name, s.script, log=str(Path("logs") / f"{s.name}.log")) for s in stages]
    _save(out, states)
    for state in states:
        if state.status == "done":
            echo(f"stage {state.name}: done before, skipped")
            continue
        log = out / state.log
        state.status, state.started, state.exit_code = "running", time.time(), None
        _save(out, states)
        echo(f"stage {state.name}: bash {state.script} (log: {log})")
        with open(log, "w", encoding="utf-8") as f:
            code = subprocess.run(
                ["bash", str((out / "scripts" / state.script).resolve())],
                cwd=cwd,
                env={**os.environ, **env},
                stdout=f,
                stderr=subprocess.STDOUT,
            ).returncode
        state.exit_code, state.seconds = code, round(time.time() - state.started, 3)
        state.status = "done" if code == 0 else "failed"
        _save(out, states)
        if code != 0:
            raise TunebridgeError(
                f"stage {state.name} failed (exit {code}); the last lines of {log}:\n{tail(log)}\n"
                f"fix it, then run again with --resume to start from {state.name}"
            )
    return states
