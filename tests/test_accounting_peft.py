"""Counted parameters equal what transformers and PEFT instantiate."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.accounting import count, expand_targets
from tunebridge.catalogue import CATALOGUE, get_model
from tunebridge.dialects.hf import PEFT_TARGET

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


# a mixture of experts: LoRA on attention (tunebridge does not count LoRA on its experts yet)
CASES = [(n, t) for n in TINY for t in TARGET_SETS] + [(n, t) for n in TINY_MOE for t in TARGET_SETS[:2]]


@pytest.mark.parametrize("name,targets", CASES, ids=lambda v: "+".join(v) if isinstance(v, list) else v)
@pytest.mark.parametrize("rank", [4, 8])
def test_lora_counts_equal_peft(name, targets, rank):
    spec = get_model(name)
    model = get_peft_model(hf_model(spec, "meta"), LoraConfig(
        r=rank, lora_alpha=16, target_modules=[PEFT_TARGET[p] for p in expand_targets(targets)]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report = count(spec, "torch", rank=rank, targets=targets)
    assert trainable == report.trainable_params
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == report.total_params
    # PEFT's own percentage divides by base + adapter, as ParamReport.peft_trainable_percent does
    trainable_peft, all_peft = model.get_nb_trainable_parameters()
    assert 100 * trainable_peft / all_peft == pytest.approx(report.peft_trainable_percent, rel=1e-12)
