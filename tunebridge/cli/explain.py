"""``tunebridge explain``: each recipe field as MindFormers, MindSpeed-LLM and the torch backend set it."""

from __future__ import annotations

from ..backends.mindspeed_llm.render import DEFAULT_VERSION, VERSIONS
from .tables import console as make_console, table


def register(sub) -> None:
    p = sub.add_parser("explain", help="recipe field -> MindFormers key -> MindSpeed-LLM flag -> torch setting")
    p.add_argument("recipe", help="recipe YAML")
    p.add_argument(
        "--mindspeed-llm-version",
        default=DEFAULT_VERSION,
        choices=VERSIONS,
        help="MindSpeed-LLM version whose flags to show (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from ..recipe.explain import explain_rows
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.recipe)
    console = make_console()
    t = table(
        f"{recipe.name}: one recipe, three stacks",
        ["recipe field", "value", "MindFormers YAML", "MindSpeed-LLM flag", "torch backend"],
    )
    for row in explain_rows(recipe, args.mindspeed_llm_version):
        t.add_row(row.field, row.value, row.mindformers, row.mindspeed_llm, row.torch)
    console.print(t)
    from ..backends.stacks import stacks_for

    for note in stacks_for(recipe.spec)[1]:
        console.print(f"not runnable on {note}")
    from ..recipe.mapping import NON_EQUIVALENCES

    n = table(
        "where the stacks' math differs, and how parity runs align it",
        ["topic", "MindFormers", "MindSpeed-LLM", "torch", "parity alignment"],
        show_lines=True,
    )
    for e in NON_EQUIVALENCES:
        n.add_row(e.topic, e.mindformers, e.mindspeed_llm, e.torch, e.alignment)
    console.print(n)
    return 0
