"""`tunebridge explain` reads the mapping table the renderers are checked against."""
from __future__ import annotations

import pytest

from tunebridge.cli import main
from tunebridge.recipe.explain import explain_rows
from tunebridge.recipe.mapping import FIELDS, NON_EQUIVALENCES, flags_for, get_path
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import _lora_plan
from tunebridge.backends.mindformers import render as mf
from tunebridge.backends.mindspeed_llm.render import FLAGS

from .families import RECIPES, renderable


@pytest.mark.parametrize("path", [p for p in RECIPES if "mindformers" in renderable(p)], ids=lambda p: p.stem)
def test_every_mindformers_key_of_the_table_is_in_the_rendered_yaml(path):
    recipe = load_recipe(path)
    config = mf.finetune_config(recipe, recipe.spec, _lora_plan(recipe, "mindformers"))
    missing = []
    for f in FIELDS:
        if f.mindformers and not (f.recipe.startswith("finetune.lora") and recipe.finetune.method != "lora"):
            try:
                get_path(config, f.mindformers)
            except (KeyError, IndexError, TypeError):
                missing.append(f.mindformers)
    assert missing == [], f"keys of the table the rendered finetune YAML does not hold: {missing}"


def test_table_values_equal_the_rendered_values():
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    rows = {r.field: r for r in explain_rows(recipe)}
    assert rows["train.lr"].mindformers == "lr_schedule.learning_rate: 1e-05"
    assert rows["train.lr"].mindspeed_llm == "--lr 1e-5"
    assert rows["train.lr"].torch == "lr: 1e-05"
    assert rows["finetune.lora.targets"].mindformers == "model.model_config.pet_config.target_modules: .*wq|.*wv"
    assert rows["finetune.lora.targets"].mindspeed_llm == "--lora-target-modules linear_qkv"
    assert rows["parallel.tp"].mindspeed_llm == "--tensor-model-parallel-size 4"


def test_every_recipe_field_a_flag_reads_appears_in_the_table():
    table = {f.recipe for f in FIELDS}
    fields = {part.strip() for f in FLAGS for part in f.recipe_field.split("/")
              if part.strip().startswith(("train.", "finetune.lora.", "parallel."))}
    missing = fields - table - {"train.max_steps", "parallel.num_layer_list", "parallel.make_vocab_size_divisible_by"}
    assert not missing
    assert flags_for("train.lr") == ["--lr"]


def test_explain_prints_the_non_equivalences(capsys):
    assert main(["explain", "recipes/tiny-demo-lora.yaml"]) == 0
    out = capsys.readouterr().out
    assert "Adam bias correction" in out and "linear_qkv" in out
    assert {e.topic for e in NON_EQUIVALENCES} >= {"LoRA targets", "Adam bias correction", "loss averaging",
                                                  "'Network Parameters' line", "optimizer state dtype"}
