"""``tunebridge`` command line. Each subcommand lives in its own module with a ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import TunebridgeError

# Subcommand modules, in the order `tunebridge --help` lists them.
COMMANDS = ("demo", "models", "validate", "params", "explain", "render", "convert", "data", "eval", "run", "sweep", "compare", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunebridge",
        description="One fine-tuning recipe for MindFormers, MindSpeed-LLM and PyTorch, with parity checks.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TunebridgeError as e:
        print(f"tunebridge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunebridge: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
