"""Call tunebridge code inside the MindSpore environment (``.venv-mindspore``) through a subprocess.

MindFormers pins transformers 4.x and numpy<2, which clash with the torch stack, so the MindSpore side
lives in its own virtual environment (as it does on Ascend hosts). A call names a function
``tunebridge.<module>.<function>``; keyword arguments and the result are JSON; bulk data travels in
files (safetensors, .npy, MindRecord) whose paths are arguments.

    python -m tunebridge.backends.mindformers.bridge MODULE FUNCTION   # reads JSON kwargs on stdin, writes JSON result
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from ...errors import TunebridgeError

REPO = Path(__file__).resolve().parents[3]
_RESULT_MARK = "@@tunebridge-result@@"


def mindspore_python() -> Path:
    """The interpreter of the MindSpore environment: $TUNEBRIDGE_MINDSPORE_PYTHON or .venv-mindspore."""
    env = os.environ.get("TUNEBRIDGE_MINDSPORE_PYTHON")
    path = Path(env) if env else REPO / ".venv-mindspore" / "bin" / "python"
    if not path.exists():
        raise TunebridgeError(
            f"MindSpore environment not found at {path}: run `bash scripts/setup.sh mindspore` "
            f"or set TUNEBRIDGE_MINDSPORE_PYTHON"
        )
    return path


def call_mindspore(module: str, function: str, timeout: float | None = None, log=None, **kwargs):
    """Run ``tunebridge.<module>.<function>(**kwargs)`` in the MindSpore environment and return its result.

    ``log`` (a callable taking a line) receives the worker's stderr lines as they come; otherwise
    they are collected and shown only if the call fails.
    """
    env = dict(os.environ, GLOG_v="3", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    # MindFormers writes ./output/ (logs, adapter_config.json) wherever it runs: give it a scratch directory.
    with tempfile.TemporaryDirectory(prefix="tunebridge-ms-") as scratch:
        proc = subprocess.Popen(
            [str(mindspore_python()), "-m", "tunebridge.backends.mindformers.bridge", module, function],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=scratch,
        )
        lines: list[str] = []
        stdin, stdout_pipe, stderr_pipe = proc.stdin, proc.stdout, proc.stderr
        assert stdin is not None and stdout_pipe is not None and stderr_pipe is not None  # all three are PIPEs

        def pump() -> None:  # stderr as it comes (a training run's progress lines), kept for an error report
            for line in stderr_pipe:
                lines.append(line)
                if log is not None:
                    log(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.start()
        try:
            stdin.write(json.dumps(kwargs))
            stdin.close()
            stdout = stdout_pipe.read()
            proc.wait()
            reader.join()
        finally:
            if timer:
                timer.cancel()
        stderr = "".join(lines)
    if timed_out.is_set():
        raise TunebridgeError(f"the MindSpore worker {module}.{function} did not finish in {timeout:g} s")
    result = None
    for line in stdout.splitlines():
        if line.startswith(_RESULT_MARK):
            result = json.loads(line[len(_RESULT_MARK) :])
    if result is None:
        raise RuntimeError(
            f"MindSpore worker {module}.{function} exited {proc.returncode} without a result:\n"
            f"{stderr[-4000:]}\n{stdout[-2000:]}"
        )
    if "error" in result:
        cls = TunebridgeError if result.get("user_error") else RuntimeError
        raise cls(result["error"] if result.get("user_error") else f"{result['error']}\n{result['traceback']}")
    return result["value"]


def _serve(module: str, function: str) -> int:
    kwargs = json.loads(sys.stdin.read() or "{}")
    try:
        fn = getattr(importlib.import_module(f"tunebridge.{module}"), function)
        out = {"value": fn(**kwargs)}
    except TunebridgeError as e:
        out = {"error": str(e), "user_error": True}
    except Exception as e:  # noqa: BLE001 - reported to the caller with its traceback
        out = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    sys.stdout.write("\n" + _RESULT_MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2]))
