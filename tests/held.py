"""A real ``tunebridge`` process held in the middle of its work, for tests that kill or interrupt it there.

The function named by ``hold`` (``module.name``) waits, on its ``call``-th call, until the file ``go`` exists (at
most 60 s), then carries on. ``go.reached`` appears when the process gets there.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HOLDER = textwrap.dedent("""
    import functools, importlib, os, sys, time
    module, name, call, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    mod = importlib.import_module(module)
    original = getattr(mod, name)
    calls = 0

    @functools.wraps(original)
    def held(*args, **kwargs):
        global calls
        calls += 1
        if calls == call:
            open(go + ".reached", "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.05)
        return original(*args, **kwargs)
    setattr(mod, name, held)
    from tunebridge.cli import main
    sys.exit(main(sys.argv[5:]))
""")


def held(tmp_path: Path, hold: str, argv: list, call: int = 1) -> tuple[subprocess.Popen, Path]:
    """Start ``tunebridge ARGV`` and return once it is held; ``go`` (the second value) lets it go on."""
    module, name = hold.rsplit(".", 1)
    go = tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, module, name, str(call), str(go), *map(str, argv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 300
    while not Path(f"{go}.reached").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the held process never reached its hold point"
        time.sleep(0.05)
    return proc, go
