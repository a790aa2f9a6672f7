"""``tunebridge`` command line. Each subcommand lives in its own module with a ``register(subparsers)``.

Command modules import only light modules at the top (torch, transformers, megatron and MindSpore inside the
commands that use them), so that ``--help``, ``validate``, ``params``, ``explain`` and ``render`` start at once.
Every error a user can cause ends here as one ``tunebridge: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import TunebridgeError
from .args import Parser

# Subcommand modules, in the order `tunebridge --help` lists them.
COMMANDS = (
    "demo",
    "models",
    "validate",
    "params",
    "explain",
    "render",
    "convert",
    "data",
    "eval",
    "run",
    "sweep",
    "compare",
    "report",
)


def build_parser() -> Parser:
    parser = Parser(
        prog="tunebridge",
        description="One fine-tuning recipe for MindFormers, MindSpeed-LLM and PyTorch, with parity checks.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def error_line(e: BaseException) -> str:
    """The one line (and, for a recipe with several problems, its indented problem lines) the user sees."""
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"tunebridge: error: {where}{e.strerror or e}"
    return f"tunebridge: error: {e}"


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad flag (2, its error line already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except (TunebridgeError, OSError) as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a command that keeps something says what in the exception
        print(f"tunebridge: interrupted; {e or 'nothing was left half-written'}", file=sys.stderr)
        return 130
