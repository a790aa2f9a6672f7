"""Test cases generated from the registries: the tiny model of every family (catalogue names starting "tiny-"),
and those a stack can run, so that a new family's tiny model is in every test of every stack."""
from __future__ import annotations

from pathlib import Path

from tunebridge.model.catalogue import CATALOGUE
from tunebridge.model.families import FAMILIES
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.stacks import RENDERABLE, stacks_for

TINY_ALL = tuple(name for name in CATALOGUE if name.startswith("tiny-"))
# what every stack takes; a mixture of experts (tunebridge counts it, converts it not yet) has tests of its own
TINY = tuple(name for name in TINY_ALL if not CATALOGUE[name].num_experts)
TINY_MOE = tuple(name for name in TINY_ALL if CATALOGUE[name].num_experts)
# MindFormers runs only the families that declare its model (the others say why not)
MINDFORMERS_TINY = tuple(name for name in TINY if FAMILIES[CATALOGUE[name].family].mindformers)

RECIPES = tuple(sorted(Path(__file__).parent.parent.glob("recipes/*.yaml")))


def renderable(path: Path) -> tuple[str, ...]:
    """The stacks that render the recipe's model (a stack its family cannot run refuses it, saying why)."""
    return tuple(stacks_for(load_recipe(path).spec, RENDERABLE, render=True)[0])
