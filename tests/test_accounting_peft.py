"""Counted parameters equal what transformers and PEFT instantiate."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.model.accounting import count, expand_targets
from tunebridge.model.catalogue import CATALOGUE, get_model
from tunebridge.model.dialects.hf import PEFT_PARAMETER, PEFT_TARGET

from .families import TINY, TINY_MOE

TARGET_SETS = [["q", "v"], ["q", "k", "v", "o"], ["gate", "up", "down"], ["all-linear"]]


def hf_model(spec, device: str = "cpu"):
    with torch.device(device):
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_total_params_equal_transformers(name):
    spec = CATALOGUE[name]
    model = hf_model(spec, "meta")
    assert sum(p.numel() for p in model.parameters()) == spec.total_params()


def test_catalogue_anchor():
    assert get_model("llama3-8b").total_params() == 8_030_261_248


# a mixture of experts: gate, up and down are its experts' (PEFT's target_parameters on the fused expert tensors)
CASES = [(n, t) for n in TINY + TINY_MOE for t in TARGET_SETS] + [(n, ["down"]) for n in TINY_MOE]


def peft_config(spec, targets, rank: int) -> LoraConfig:
    adapted = spec.adapted(expand_targets(targets))
    parameters = sorted({PEFT_PARAMETER[t] for t in adapted if t in PEFT_PARAMETER})
    return LoraConfig(r=rank, lora_alpha=16, target_modules=[PEFT_TARGET[t] for t in adapted if t in PEFT_TARGET] or None,
                      target_parameters=parameters or None)


@pytest.mark.parametrize("name,targets", CASES, ids=lambda v: "+".join(v) if isinstance(v, list) else v)
@pytest.mark.parametrize("rank", [4, 8])
def test_lora_counts_equal_peft(name, targets, rank):
    spec = get_model(name)
    model = get_peft_model(hf_model(spec, "meta"), peft_config(spec, targets, rank))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = count(spec, "torch", rank=rank, targets=targets)
    assert trainable == report.trainable_params
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == report.total_params
    # PEFT's own percentage divides by base + adapter, as ParamReport.peft_trainable_percent does
    trainable_peft, all_peft = model.get_nb_trainable_parameters()
    assert 100 * trainable_peft / all_peft == pytest.approx(report.peft_trainable_percent, rel=1e-12)


def test_megatron_ranks_of_a_tied_model_by_hand():
    """tiny-qwen2-tied: 4 layers, hidden 64, vocab 512 (32,768 embedding values), one KV head (q 64 + k, v 16
    each: linear_qkv is 64 -> 96)."""
    from tunebridge.model.accounting import count
    spec = get_model("tiny-qwen2-tied")
    total, vocab_rows, norms = 197_568, 512 * 64, 4 * 2 * 64 + 64   # layer norms and the final norm
    full = count(spec, "mindspeed-llm", "full")
    assert (full.exact, full.per_rank_trainable) == (True, None)    # pp 1, tp 1 by default: no per-rank table
    # pp 2: the last stage holds its own copy of the tied embedding as the output layer
    ranks = [r["trainable"] for r in count(spec, "mindspeed-llm", "full", pp=2).per_rank_trainable]
    assert ranks == [115_136, 115_200] and sum(ranks) == total + vocab_rows
    assert all(type(n) is int for n in ranks)                       # counts, not sizes divided into floats
    # tp 2: every parameter once, the replicated norms on both ranks
    ranks = [r["trainable"] for r in count(spec, "mindspeed-llm", "full", tp=2).per_rank_trainable]
    assert ranks == [99_072, 99_072] and sum(ranks) == total + norms
    # LoRA r8 on linear_qkv: A (8 x 64) on every rank, B (96 x 8) split in two
    lora = count(spec, "mindspeed-llm", targets=["q", "k", "v"], tp=2)
    assert [r["trainable"] for r in lora.per_rank_trainable] == [4 * (8 * 64 + 8 * 96 // 2)] * 2
    assert [r["layers"] for r in count(spec, "mindspeed-llm", targets=["q"], pp=2).per_rank_trainable] == [2, 2]


def test_lora_plans_name_what_they_cover():
    from tunebridge.model.accounting import contest_score, lora_module_params, plan_lora
    from tunebridge.model.dialects import get_dialect
    plan = plan_lora("mindspeed-llm", ["q", "gate"])
    assert (plan.backend, plan.exact, plan.native_targets) == ("mindspeed-llm", False, ("linear_qkv", "linear_fc1"))
    assert plan.note == ("mindspeed-llm fuses projections (linear_qkv = q+k+v; linear_fc1 = gate+up) and shares one "
                         "LoRA A per fused module: targets ['q', 'gate'] can only be reached through ['linear_qkv', "
                         "'linear_fc1'], which also adapts ['k', 'v', 'up']; counts differ from per-projection LoRA")
    native = plan_lora("mindspeed-llm", ["q", "k", "v"], ["linear_fc1", "linear_qkv"])  # covered in model order
    assert (native.backend, native.covered, native.native_targets) == (
        "mindspeed-llm", ["q", "k", "v", "gate", "up"], ("linear_fc1", "linear_qkv"))
    assert native.note == ("native targets ['linear_fc1', 'linear_qkv'] cover ['q', 'k', 'v', 'gate', 'up'], the "
                           "recipe's canonical targets are ['q', 'k', 'v']")
    assert plan_lora("mindspeed-llm", ["q", "k", "v"], ["linear_qkv"]).note == ""
    with pytest.raises(ValueError, match=r"^mindspeed-llm: unknown native LoRA targets \['qkv'\] \(known: "
                                         r"\['linear_qkv', 'linear_proj', 'linear_fc1', 'linear_fc2'\]\)$"):
        plan_lora("mindspeed-llm", [], ["qkv"])
    with pytest.raises(ValueError, match=r"^unknown backend 'foo' \(known: torch, mindformers, mindspeed-llm\)$"):
        count(get_model("tiny-llama"), "foo")
    spec = get_model("tiny-llama")
    assert count(spec, "mindspeed-llm", targets=["q"], native_targets=["linear_proj"]).native_targets == ["linear_proj"]
    wq = get_dialect("mindformers").lora_modules[0]  # replicated: all of A and B on every rank
    assert lora_module_params(wq, spec, 8, tp=2) == 8 * (64 + 64)
    assert contest_score(0.25, 0.5) == pytest.approx(0.75 * 0.3 + 0.5 * 0.7)


def test_a_full_fine_tune_reports_every_parameter_trainable():
    assert count(get_model("tiny-llama"), "torch", method="full").to_dict() == {
        "backend": "torch", "model": "tiny-llama", "method": "full", "total_params": 238_144,
        "trainable_params": 238_144, "low_param_ratio": 1.0, "peft_trainable_percent": 100.0, "exact": True,
        "native_targets": [], "note": "", "lora_rank": None}


def test_the_note_names_only_the_fused_modules():
    note = count(get_model("tiny-llama"), "mindspeed-llm", rank=8, targets=["q", "v", "o"]).note
    assert note == ("mindspeed-llm fuses projections (linear_qkv = q+k+v) and shares one LoRA A per fused module: "
                    "targets ['q', 'v', 'o'] can only be reached through ['linear_qkv', 'linear_proj'], which also "
                    "adapts ['k']; counts differ from per-projection LoRA")


def test_per_rank_counts_appear_when_the_model_is_split_and_hold_each_ep_ranks_experts():
    spec = get_model("tiny-qwen3-moe")
    assert count(spec, "mindspeed-llm", rank=8, targets=["q", "k", "v", "o"]).per_rank_trainable is None
    assert [r["ep_rank"] for r in count(spec, "mindspeed-llm", method="full", ep=2).per_rank_trainable] == [0, 1]
    # rank 8, per layer: linear_qkv 8 x (64 + 256), linear_proj 8 x (128 + 64), and linear_fc2 8 x (48 + 64) for
    # each of the 8 / 2 experts an ep rank holds; attention's pairs are on every ep rank
    report = count(spec, "mindspeed-llm", rank=8, targets=["q", "k", "v", "o", "down"], ep=2)
    per_layer = 8 * (64 + 256) + 8 * (128 + 64) + 4 * 8 * (48 + 64)
    assert report.per_rank_trainable == [
        {"pp_rank": 0, "tp_rank": 0, "ep_rank": e, "layers": 4, "trainable": 4 * per_layer} for e in (0, 1)]
    assert report.trainable_params == 4 * (8 * (64 + 256) + 8 * (128 + 64) + 8 * 8 * (48 + 64))
