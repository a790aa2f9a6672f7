"""Recipes: every bundled recipe validates; each class of mistake is named by field, file and line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebridge.model.catalogue import get_model
from tunebridge.cli import main
from tunebridge.recipe.schema import RecipeError, load_recipe

GOOD = """\
name: t
model: {arch: llama3-8b}
finetune:
  method: lora
  lora: {rank: 8, alpha: 16, dropout: 0.05, targets: [q, v]}
train:
  global_batch_size: 32
  micro_batch_size: 4
  lr: 1.0e-5
parallel:
  tp: 4
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    return e.value.problems


def only(tmp_path: Path, text: str) -> str:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("path", sorted(Path("recipes").glob("*.yaml")))
def test_bundled_recipes_validate(path):
    r = load_recipe(path)
    assert r.name == path.stem
    assert r.spec.total_params() > 0


def test_good_recipe_and_defaults(tmp_path):
    (tmp_path / "r.yaml").write_text(GOOD)
    r = load_recipe(tmp_path / "r.yaml")
    assert r.train.optimizer.type == "adamw" and r.parallel.pp == 1 and r.finetune.lora.alpha == 16


def test_unknown_key_with_did_you_mean(tmp_path):
    msg = only(tmp_path, GOOD.replace("rank: 8", "rnak: 8").replace("lora: {", "lora: {rank: 8, "))
    assert msg.startswith(f"{tmp_path / 'recipe.yaml'}:5:")
    assert "finetune.lora.rnak: unknown key" in msg and "did you mean 'rank'?" in msg


def test_wrong_type_names_field_and_line(tmp_path):
    msg = only(tmp_path, GOOD.replace("lr: 1.0e-5", "lr: fast"))
    assert ":9:" in msg and "train.lr:" in msg and "'fast'" in msg


def test_bad_choice_with_did_you_mean(tmp_path):
    msg = only(tmp_path, GOOD.replace("method: lora", "method: lroa"))
    assert ":4:" in msg and "finetune.method" in msg and "did you mean 'lora'?" in msg


def test_unknown_arch(tmp_path):
    msg = only(tmp_path, GOOD.replace("llama3-8b", "lama3-8b"))
    assert ":2:" in msg and "model.arch" in msg and "did you mean 'llama3-8b'?" in msg


def test_framework_target_names_point_at_canonical_ones(tmp_path):
    found = problems(tmp_path, GOOD.replace("targets: [q, v]", "targets: [wq, linear_qkv, qq]"))
    assert len(found) == 3
    assert "targets[0]" in found[0] and "canonical target 'q'" in found[0]
    assert "targets[1]" in found[1] and "native_targets" in found[1] and "['q', 'k', 'v']" in found[1]
    assert "targets[2]" in found[2] and "did you mean 'q'?" in found[2]


def test_rank_must_be_positive(tmp_path):
    msg = only(tmp_path, GOOD.replace("rank: 8", "rank: 0"))
    assert ":5:" in msg and "finetune.lora.rank: must be > 0" in msg


def test_tp_must_divide_kv_heads(tmp_path):
    msg = only(tmp_path, GOOD.replace("tp: 4", "tp: 3"))
    assert ":11:" in msg and "parallel.tp" in msg and "8 KV heads" in msg and "1, 2, 4, 8" in msg


def test_pp_must_divide_layers_without_a_list(tmp_path):
    msg = only(tmp_path, GOOD.replace("tp: 4", "pp: 3"))
    assert ":11:" in msg and "parallel.pp" in msg and "num_layer_list" in msg


def test_num_layer_list_must_add_up(tmp_path):
    msg = only(tmp_path, GOOD.replace("tp: 4", "pp: 3\n  num_layer_list: [10, 10, 10]"))
    assert ":12:" in msg and "parallel.num_layer_list" in msg and "sum to 30" in msg
    msg = only(tmp_path, GOOD.replace("tp: 4", "pp: 2\n  num_layer_list: [10, 10, 12]"))
    assert "has 3 entries but pp is 2" in msg
    (tmp_path / "ok.yaml").write_text(GOOD.replace("tp: 4", "pp: 3\n  num_layer_list: [10, 11, 11]"))
    assert load_recipe(tmp_path / "ok.yaml").parallel.num_layer_list == [10, 11, 11]


def test_batch_must_split_into_micro_batches(tmp_path):
    msg = only(tmp_path, GOOD.replace("global_batch_size: 32", "global_batch_size: 30"))
    assert ":7:" in msg and "train.global_batch_size" in msg


def test_lora_section_required_for_lora(tmp_path):
    msg = only(tmp_path, GOOD.replace("  lora: {rank: 8, alpha: 16, dropout: 0.05, targets: [q, v]}\n", ""))
    assert ":3:" in msg and "finetune:" in msg and "needs a lora" in msg


def test_several_problems_are_reported_together_in_file_order(tmp_path):
    broken = (GOOD.replace("rank: 8", "rank: -1").replace("tp: 4", "tp: 5")
              .replace("lr: 1.0e-5", "lr: 1.0e-5\n  warmup_ratio: 1.5"))
    found = problems(tmp_path, broken)
    fields = [p.split(": ")[1] for p in found]
    assert fields == ["finetune.lora.rank", "train.warmup_ratio", "parallel.tp"]
    # an unknown model comes first (line 2); tp cannot be checked against a model that is not known
    found = problems(tmp_path, broken.replace("llama3-8b", "lama3-8b"))
    assert [p.split(": ")[1] for p in found] == ["model.arch", "finetune.lora.rank", "train.warmup_ratio"]
    assert found[0].startswith(f"{tmp_path / 'recipe.yaml'}:2:") and "did you mean 'llama3-8b'?" in found[0]


def test_yaml_syntax_error_names_the_line(tmp_path):
    msg = only(tmp_path, GOOD.replace("  method: lora", "  method: [lora"))
    assert "not valid YAML" in msg and str(tmp_path / "recipe.yaml") in msg


def test_model_from_hf_config(tmp_path):
    spec = get_model("tiny-qwen2")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(spec.to_hf_config()))
    (tmp_path / "r.yaml").write_text(GOOD.replace("{arch: llama3-8b}", "{hf_config: model}").replace("tp: 4", "tp: 2"))
    r = load_recipe(tmp_path / "r.yaml")
    assert r.spec.total_params() == spec.total_params()
    assert r.spec.qkv_bias and r.spec.num_kv_heads == 2
    msg = only(tmp_path, GOOD.replace("{arch: llama3-8b}", "{hf_config: missing}"))
    assert "model.hf_config" in msg and "no config.json" in msg


def test_native_targets_override(tmp_path, capsys):
    text = GOOD.replace("targets: [q, v]}", "targets: [q, v], native_targets: {mindspeed-llm: [linear_qkv, lnear_proj]}}")
    msg = only(tmp_path, text)
    assert "native_targets.mindspeed-llm[1]" in msg and "did you mean 'linear_proj'?" in msg
    (tmp_path / "r.yaml").write_text(text.replace("lnear_proj", "linear_proj"))
    r = load_recipe(tmp_path / "r.yaml")
    report = r.param_report("mindspeed-llm")
    assert report.native_targets == ["linear_qkv", "linear_proj"] and report.exact is False


def test_validate_cli(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(GOOD.replace("rank: 8", "rank: 0"))
    assert main(["validate", "recipes/tiny-demo-lora.yaml"]) == 0
    assert "ok: recipes/tiny-demo-lora.yaml" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "bad.yaml")]) == 2
    assert "finetune.lora.rank: must be > 0" in capsys.readouterr().err
