"""`tunebridge params` reproduces the seeds' figures and the framework differences exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebridge.cli import main

LLAMA_R8 = "recipes/llama3-8b-math-lora-r8.yaml"
QWEN_LORA = "recipes/qwen2.5-7b-alpaca-zh-lora.yaml"


def params_json(capsys, *args) -> dict | list:
    assert main(["params", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("backend", ["mindformers", "torch"])
def test_llama3_r8_q_v_on_per_projection_backends(capsys, backend):
    r = params_json(capsys, LLAMA_R8, "--backend", backend)
    assert r["backend"] == backend
    assert r["total_params"] == 8_030_261_248
    assert r["trainable_params"] == 3_407_872
    assert r["low_param_ratio"] == 3_407_872 / 8_030_261_248
    assert r["peft_trainable_percent"] == pytest.approx(100 * 3_407_872 / (8_030_261_248 + 3_407_872))
    assert r["exact"] is True and r["note"] == ""
    assert "per_rank_trainable" not in r  # only Megatron counts per rank


def test_llama3_r8_q_v_on_mindspeed_llm_is_not_exact(capsys):
    r = params_json(capsys, LLAMA_R8, "--backend", "mindspeed-llm")
    assert r["exact"] is False
    assert r["native_targets"] == ["linear_qkv"]
    assert r["trainable_params"] == 2_621_440  # one shared A [8, 4096] + B [6144, 8] per layer
    assert "linear_qkv" in r["note"] and "'k'" in r["note"]
    # tp 4: column-parallel LoRA A is replicated, B split
    assert [x["trainable"] for x in r["per_rank_trainable"]] == [32 * (8 * 4096 + 6144 * 8 // 4)] * 4


def test_strict_refuses_an_inexact_backend(capsys):
    assert main(["params", LLAMA_R8, "--backend", "mindspeed-llm", "--strict"]) == 2
    assert "cannot express" in capsys.readouterr().err
    assert main(["params", LLAMA_R8, "--backend", "mindformers", "--strict"]) == 0


def test_qwen25_7b_all_seven_projections(capsys, tmp_path):
    torch_r, mf_r, msl_r = params_json(capsys, QWEN_LORA, "--backend", "all")
    assert torch_r["trainable_params"] == mf_r["trainable_params"] == 20_185_088
    assert msl_r["trainable_params"] == 17_776_640
    assert msl_r["exact"] is True
    assert msl_r["native_targets"] == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    # pp 8 over 28 layers with --num-layer-list 4,4,4,4,3,3,3,3
    assert [x["trainable"] for x in msl_r["per_rank_trainable"]] == [4 * 634_880] * 4 + [3 * 634_880] * 4


@pytest.mark.parametrize("tp,per_layer", [(2, 374_784), (4, 244_736)])
def test_qwen25_7b_per_rank_counts_under_tp(capsys, tmp_path, tp, per_layer):
    text = open(QWEN_LORA).read().replace(
        "parallel: {tp: 1, pp: 8, dp: 1, num_layer_list: [4, 4, 4, 4, 3, 3, 3, 3]}", f"parallel: {{tp: {tp}}}").replace(
        "../data/samples/", f"{Path('data/samples').resolve()}/")  # the copy lives elsewhere: its data path too
    path = tmp_path / "qwen.yaml"
    path.write_text(text)
    r = params_json(capsys, str(path), "--backend", "mindspeed-llm")
    assert [x["trainable"] for x in r["per_rank_trainable"]] == [28 * per_layer] * tp


def test_seed_figures(capsys):
    assert params_json(capsys, "recipes/llama3-8b-math-lora-r12.yaml", "--backend", "mindformers")[
        "trainable_params"] == 5_111_808
    r = params_json(capsys, "recipes/internlm-7b-mmlu-lora.yaml", "--backend", "mindformers")
    assert r["trainable_params"] == 8_388_608
    assert round(100 * r["low_param_ratio"], 4) == 0.1146


def test_full_finetuning_trains_everything(capsys):
    r = params_json(capsys, "recipes/qwen2.5-7b-alpaca-zh-full.yaml", "--backend", "mindspeed-llm")
    assert r["trainable_params"] == r["total_params"] == 7_615_616_512
    assert r["low_param_ratio"] == 1.0
    # Qwen2.5-7B, by hand: a layer is q, o (3584 x 3584 each) + k, v (512 x 3584 each) + q/k/v biases (3584 +
    # 2 x 512) + gate/up/down (3 x 3584 x 18944) + two norms (2 x 3584) = 233,057,792; the embedding and the
    # output layer are 152064 x 3584 = 544,997,376 each, the final norm 3584.
    layer, vocab_rows, final_norm = 233_057_792, 544_997_376, 3584
    per = r["per_rank_trainable"]
    # pp 8 with --num-layer-list 4,4,4,4,3,3,3,3: stage 0 holds the embedding, the last the final norm and output
    assert [(x["pp_rank"], x["tp_rank"], x["layers"]) for x in per] == [
        (i, 0, n) for i, n in enumerate([4, 4, 4, 4, 3, 3, 3, 3])]
    assert [x["trainable"] for x in per] == [4 * layer + vocab_rows] + [4 * layer] * 3 + [3 * layer] * 3 + [
        3 * layer + final_norm + vocab_rows]
    assert sum(x["trainable"] for x in per) == 7_615_616_512


def test_table_output_labels_the_denominators(capsys):
    assert main(["params", LLAMA_R8]) == 0
    out = capsys.readouterr().out
    assert "trainable / base total" in out and "trainable / (base + adapter)" in out
    assert "3,407,872" in out and "2,621,440" in out
