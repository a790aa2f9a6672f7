"""Test cases generated from the registries: the tiny model of every family (catalogue names starting "tiny-"),
and those a stack can run, so that a new family's tiny model is in every test of every stack."""
from __future__ import annotations

from tunebridge.catalogue import CATALOGUE
from tunebridge.families import FAMILIES

TINY = tuple(name for name in CATALOGUE if name.startswith("tiny-"))
# MindFormers runs only the families that declare its model (the others say why not)
MINDFORMERS_TINY = tuple(name for name in TINY if FAMILIES[CATALOGUE[name].family].mindformers)
