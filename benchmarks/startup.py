"""Wall time from process start to exit of the commands that only read recipes (not a test).

    .venv/bin/python benchmarks/startup.py [--repeat 7]

Each command runs as the console script does (a fresh interpreter running ``tunebridge.cli.main``), ``--repeat``
times, interleaved with a bare interpreter (``python -c pass``) for scale; the table shows medians. The test
tests/test_cli_startup.py holds the reason these are fast: none of them imports torch, transformers, megatron
or MindSpore.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": None,
    "tunebridge --help": ["--help"],
    "tunebridge validate": ["validate", "recipes/llama3-8b-math-lora-r8.yaml"],
    "tunebridge params": ["params", "recipes/llama3-8b-math-lora-r8.yaml"],
    "tunebridge explain": ["explain", "recipes/tiny-demo-lora.yaml"],
    "tunebridge render": ["render", "recipes/qwen2.5-7b-alpaca-zh-lora.yaml", "--out", "{tmp}/r", "--force"],
}


def once(argv: list[str] | None, tmp: str) -> float:
    code = "pass" if argv is None else "import sys; from tunebridge.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [] if argv is None else [a.format(tmp=tmp) for a in argv]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each command (default 7)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in COMMANDS.items():  # warm the page cache once
            once(argv, tmp)
        for _ in range(args.repeat):
            for name, argv in COMMANDS.items():
                times[name].append(once(argv, tmp))
    print("| command | median wall time |\n|---|---|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.2f} s |")


if __name__ == "__main__":
    main()
