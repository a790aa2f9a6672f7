"""``tunebridge explain``: each recipe field as MindFormers, MindSpeed-LLM and the torch backend set it."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..recipe import load_recipe
from ..render.mindspeed_llm import DEFAULT_VERSION, VERSIONS


def register(sub) -> None:
    p = sub.add_parser("explain", help="recipe field -> MindFormers key -> MindSpeed-LLM flag -> torch setting")
    p.add_argument("recipe")
    p.add_argument("--mindspeed-llm-version", default=DEFAULT_VERSION, choices=VERSIONS)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..explain import explain_rows
    recipe = load_recipe(args.recipe)
    console = Console(width=160)
    t = Table(title=f"{recipe.name}: one recipe, three stacks")
    for col in ("recipe field", "value", "MindFormers YAML", "MindSpeed-LLM flag", "torch backend"):
        t.add_column(col, overflow="fold")
    for row in explain_rows(recipe, args.mindspeed_llm_version):
        t.add_row(row.field, row.value, row.mindformers, row.mindspeed_llm, row.torch)
    console.print(t)
    from ..mapping import NON_EQUIVALENCES
    n = Table(title="where the stacks' math differs, and how parity runs align it", show_lines=True)
    for col in ("topic", "MindFormers", "MindSpeed-LLM", "torch", "parity alignment"):
        n.add_column(col, overflow="fold")
    for e in NON_EQUIVALENCES:
        n.add_row(e.topic, e.mindformers, e.mindspeed_llm, e.torch, e.alignment)
    console.print(n)
    return 0
