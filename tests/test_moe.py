"""Mixture-of-experts models (Qwen3-MoE): what tunebridge counts exactly (LoRA on attention against PEFT in
test_accounting_peft), and what it refuses, saying why, until its dialects name the experts (conversion,
MindSpeed-LLM, LoRA on experts)."""
from __future__ import annotations

import pytest

from tunebridge.model.accounting import count
from tunebridge.model.catalogue import get_model
from tunebridge.converters.checkpoint import convert
from tunebridge.errors import TunebridgeError
from tunebridge.model.families import mcore_problem
from tunebridge.model.spec import ModelSpec
from tunebridge.backends.stacks import stacks_for

from .families import TINY_MOE
from .test_accounting_peft import hf_model


def test_qwen3_30b_a3b_count():
    spec = get_model("qwen3-30b-a3b")
    assert spec.total_params() == 30_532_122_624  # transformers' Qwen3MoeForCausalLM (test_accounting_peft)
    assert spec.expert_params() == 3 * 768 * 2048
    assert spec.layer_params() == (2048 * (4096 + 2 * 512) + 4096 * 2048 + 2 * 128 + 2 * 2048 + 128 * 2048
                                   + 128 * spec.expert_params())


@pytest.mark.parametrize("name", TINY_MOE)
def test_transformers_builds_the_experts_the_spec_counts(name):
    spec = get_model(name)
    model = hf_model(spec, "meta")
    assert type(model).__name__ == spec.family_record.hf_architecture
    experts = model.model.layers[0].mlp.experts
    assert sum(p.numel() for p in experts.parameters()) == spec.num_experts * spec.expert_params()
    assert model.config.num_experts_per_tok == spec.experts_per_token and model.config.norm_topk_prob


@pytest.mark.parametrize("targets", [["down"], ["all-linear"]], ids=lambda t: "+".join(t))
def test_lora_on_experts_is_refused_not_miscounted(targets):
    with pytest.raises(ValueError, match=r"tiny-qwen3-moe: LoRA on .* its 8 experts per layer"):
        count(get_model("tiny-qwen3-moe"), "torch", rank=8, targets=targets)


def test_stacks_that_cannot_take_it_say_why(tmp_path):
    spec = get_model("tiny-qwen3-moe")
    taken, notes = stacks_for(spec)
    assert taken == ["torch"]
    assert notes == [f"mindformers: tiny-qwen3-moe: {spec.family_record.mindformers_missing}",
                     f"mindspeed-llm: {mcore_problem(spec)}"]
    model = hf_model(spec)
    model.save_pretrained(tmp_path / "hf")
    with pytest.raises(TunebridgeError, match="does not convert a mixture of experts yet"):
        convert(tmp_path / "hf", tmp_path / "mc", "hf", "hf", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_dense_models_are_not_experts():
    spec = get_model("tiny-qwen3")
    assert not spec.num_experts and spec.has("gate") and not spec.has("router") and not spec.expert_tensors()
    with pytest.raises(ValueError, match="experts_per_token 9 is not in 1..8"):
        get_model("tiny-qwen3-moe").with_(experts_per_token=9)


def test_a_config_transformers_5_wrote_reads_back(tmp_path):
    spec = get_model("tiny-qwen3-moe")
    hf_model(spec, "meta").config.save_pretrained(tmp_path)
    assert "num_local_experts" in (tmp_path / "config.json").read_text()
    back = ModelSpec.from_hf_config(tmp_path, name=spec.name)
    assert back.to_dict() == spec.to_dict()
