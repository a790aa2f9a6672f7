"""The MindFormers YAML and scripts for Ascend and CPU: the defects found running them in MindFormers (issue 12), each
checked here; the end-to-end runs of the CPU profile are in test_mindformers_trainer.py.

1. optimizer keywords are the class's own (AdamW: betas) -- built by MindFormers' build_optim;
2. the MindRecord is written under the name the run reads (MindDataset refuses a renamed file);
3. one card keeps the recipe's global batch (MindFormers drops accumulation there);
4. eval / predict YAMLs carry processor.tokenizer;
5. their eos_token_id holds the template's stop token;
6. the single-card LoRA merge needs no strategy and creates its output directory;
7. Llama-3's pad_token_id is not a real token; Llama-3.1's rope scaling is MindFormers' LLAMA3 extend method.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.data.tokenizer import load_tokenizer
from tunebridge.errors import TunebridgeError
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import render, render_files

TINY = "recipes/tiny-demo-lora.yaml"
LLAMA3 = "recipes/llama3-8b-math-lora-r8.yaml"


def _yaml(files: dict, prefix: str) -> dict:
    (name,) = [n for n in files if n.startswith(prefix) and n.endswith(".yaml")]
    return yaml.safe_load(files[name])  # PyYAML: YAML 1.1, as MindFormers reads it


def _variant(path: str, tmp_path: Path, old: str, new: str) -> Path:
    text = Path(path).read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.replace(old, new).replace("../", str(Path(path).resolve().parent.parent) + "/"),
                   encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory, ms_python):
    """Rendered finetune YAMLs (AdamW, AdamWeightDecay, Llama-3.1), their parts built by MindFormers in one process."""
    tmp = tmp_path_factory.mktemp("built")
    recipes = {"AdamW": load_recipe(TINY),
               "AdamWeightDecay": load_recipe(_variant(TINY, tmp, "bias_correction: true", "bias_correction: false")),
               "llama3.1": load_recipe(_variant(LLAMA3, tmp / "l31", "model: {arch: llama3-8b}",
                                                "model: {arch: llama3.1-8b}"))}
    paths = {k: next(p for p in render(r, "mindformers", tmp / k) if p.name.startswith("finetune_"))
             for k, r in recipes.items()}
    parts = call_mindspore("backends.mindformers.ms.config", "build_parts", paths=[str(p) for p in paths.values()])
    return recipes, paths, dict(zip(paths, parts))


def test_optimizers_and_schedules_build_in_mindformers(built):
    """Every optimizer type tunebridge renders, built from the rendered keys by MindFormers 1.9.0 itself."""
    recipes, paths, parts = built
    for kind in ("AdamW", "AdamWeightDecay"):
        assert (parts[kind]["optimizer"], parts[kind]["lr_schedule"]) == (kind, "CosineWithWarmUpLR")
    assert yaml.safe_load(paths["AdamW"].read_text())["optimizer"]["betas"] == [0.9, 0.95]
    assert {"beta1": 0.9, "beta2": 0.95}.items() <= yaml.safe_load(paths["AdamWeightDecay"].read_text())[
        "optimizer"].items()


def test_prepare_writes_the_mindrecord_the_run_reads():
    files = render_files(load_recipe(TINY), "mindformers", device="cpu")
    prepare, run = files["prepare_tiny-demo-lora.sh"], files["run_tiny-demo-lora_finetune.sh"]
    assert "train.mindrecord" not in prepare.split("data prepare", 1)[1].split("\n", 1)[0]  # no mv afterwards
    assert "mv" not in prepare.split("data prepare", 1)[1]
    assert "DATA_DIR=${DATA_DIR:-./dataset/tiny-demo-lora}" in prepare
    assert "TRAIN_DATA=${TRAIN_DATA:-./dataset/tiny-demo-lora/mindformers/train.mindrecord}" in run


@pytest.mark.parametrize("device", ("ascend", "cpu"))
def test_one_card_trains_the_global_batch_in_one_pass(device):
    recipe = load_recipe(TINY)  # global 8 = micro 2 x 4
    cfg = _yaml(render_files(recipe, "mindformers", device=device), "finetune_")
    assert cfg["runner_config"]["batch_size"] == cfg["train_dataset"]["batch_size"] == 8
    assert cfg["model"]["model_config"]["batch_size"] == 8
    assert cfg["runner_config"]["gradient_accumulation_steps"] == 1 and cfg["use_parallel"] is False
    assert "the global batch 8 (= micro\n# 2 x 4 accumulation) is one batch of 8 rows" in \
        render_files(recipe, "mindformers", device=device)["finetune_tiny-demo-lora.yaml"]


def test_several_cards_keep_micro_batches_and_accumulation():
    recipe = load_recipe("recipes/internlm-7b-mmlu-lora.yaml")
    t, p = recipe.train, recipe.parallel
    cfg = _yaml(render_files(recipe, "mindformers"), "finetune_")
    assert p.dp > 1 and cfg["runner_config"]["batch_size"] == t.micro_batch_size
    assert cfg["runner_config"]["gradient_accumulation_steps"] == t.global_batch_size // (t.micro_batch_size * p.dp)


def test_micro_batch_loss_average_cannot_run_on_one_card(tmp_path):
    path = _variant(TINY, tmp_path, "loss_average: token", "loss_average: micro-batch")
    with pytest.raises(TunebridgeError, match="cannot run on one MindFormers card .* set train.loss_average: token"):
        render_files(load_recipe(path), "mindformers")


@pytest.mark.parametrize("device", ("ascend", "cpu"))
def test_eval_and_predict_name_the_tokenizer_and_stop_at_the_templates_end(device):
    files = render_files(load_recipe(TINY), "mindformers", device=device)
    tok = load_tokenizer(None)
    for prefix in ("eval_", "predict_"):
        cfg = _yaml(files, prefix)
        t = cfg["processor"]["tokenizer"]
        assert t["type"] == "LlamaTokenizerFast" and t["tokenizer_file"].endswith("tokenizer.json")
        assert (t["pad_token"], t["eos_token"], t["add_bos_token"]) == ("<pad>", "</s>", False)
        mc = cfg["model"]["model_config"]
        assert mc["eos_token_id"] == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")] == [3, 6]
        assert mc["pad_token_id"] == tok.pad_token_id == 0
    assert '--processor.tokenizer.tokenizer_file "$TOKENIZER_DIR/tokenizer.json"' in files["eval_tiny-demo-lora.sh"]


def test_llama3_stops_at_eot_and_pads_with_a_token_no_template_writes():
    mc = _yaml(render_files(load_recipe(LLAMA3), "mindformers"), "predict_")["model"]["model_config"]
    assert mc["eos_token_id"] == [128001, 128009]  # <|end_of_text|>, <|eot_id|>
    assert mc["pad_token_id"] == 128001 != 0       # 0 is "!": MindFormers would mask it as input


def test_single_card_merge_needs_no_strategy_and_makes_its_directory():
    files = render_files(load_recipe(TINY), "mindformers")
    merge = files["merge_tiny-demo-lora_lora.sh"]
    assert "--src_ckpt_strategy" not in merge and "STRATEGY_DIR" not in merge
    assert merge.index('mkdir -p "$MERGED_DIR"') < merge.index("-m mindformers.tools.transform_ckpt_lora")
    assert "--lora_scaling 2.0" in merge
    wide = render_files(load_recipe("recipes/internlm-7b-mmlu-lora.yaml"), "mindformers")
    assert '--src_ckpt_strategy "$STRATEGY_DIR"' in wide["merge_internlm-7b-mmlu-lora_lora.sh"]


def test_llama31_rope_scaling_is_mindformers_llama3_extend_method(built):
    recipes, paths, parts = built
    mc = yaml.safe_load(paths["llama3.1"].read_text())["model"]["model_config"]
    assert mc["extend_method"] == "LLAMA3"
    assert mc["scaling_factor"] == {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192}
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    spec = recipes["llama3.1"].spec
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](AutoConfig.for_model(**spec.to_hf_config()), "cpu")
    assert parts["llama3.1"]["rope"] == "LLAMA3"  # MindFormers' own FreqsMgr: the frequencies transformers uses
    np.testing.assert_allclose(parts["llama3.1"]["inv_freq"], inv_freq.double().numpy(), rtol=1e-6, atol=1e-12)
    plain = _yaml(render_files(load_recipe(LLAMA3), "mindformers"), "finetune_")["model"]["model_config"]
    assert plain["extend_method"] == "None" and plain["scaling_factor"] == 1.0


@pytest.mark.parametrize("device", ("ascend", "cpu"))
def test_device_profiles(device):
    cfg = _yaml(render_files(load_recipe(TINY), "mindformers", device=device), "finetune_")
    mc = cfg["model"]["model_config"]
    cpu = device == "cpu"
    assert cfg["context"]["device_target"] == ("CPU" if cpu else "Ascend")
    assert ("max_device_memory" in cfg["context"]) is not cpu
    assert cfg["runner_config"]["sink_mode"] is not cpu and mc["use_flash_attention"] is not cpu
    assert (mc.get("use_rope_slice"), mc.get("fused_rms_norm")) == ((True, False) if cpu else (None, None))
    assert cfg["train_dataset"]["data_loader"]["shuffle"] is not cpu
    assert cfg["train_dataset"]["num_parallel_workers"] == (1 if cpu else 8)
    run = render_files(load_recipe(TINY), "mindformers", device=device)["run_tiny-demo-lora_finetune.sh"]
    assert ("cpu_site" in run) is cpu


def test_max_steps_stop_the_trainer_and_shape_the_schedule():
    cfg = _yaml(render_files(load_recipe("recipes/tiny-parity-lora.yaml"), "mindformers"), "finetune_")
    assert cfg["lr_schedule"]["total_steps"] == 20
    assert {"type": "TrainCallBack", "stop_step": 20} in cfg["callbacks"]
    assert math.isclose(cfg["lr_schedule"]["warmup_ratio"] * 20, 2)


def test_cpu_profile_refuses_a_recipe_it_cannot_run():
    with pytest.raises(TunebridgeError, match="train.dtype bf16: MindSpore's CPU kernels run fp32 only"):
        render_files(load_recipe(LLAMA3), "mindformers", device="cpu")
