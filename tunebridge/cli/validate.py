"""``tunebridge validate``: check recipes, reporting every problem with file, line and field."""

from __future__ import annotations

import sys

from ..errors import TunebridgeError
from . import error_line


def register(sub) -> None:
    p = sub.add_parser("validate", help="check one or more recipes")
    p.add_argument("recipes", nargs="+", help="recipe YAML files")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipe.schema import load_recipe

    failed = 0
    for path in args.recipes:
        try:
            r = load_recipe(path)
        except TunebridgeError as e:
            failed += 1
            print(error_line(e), file=sys.stderr)
            continue
        print(f"ok: {path} ({r.name}, {r.spec.name}, {r.finetune.method})")
    return 2 if failed else 0
