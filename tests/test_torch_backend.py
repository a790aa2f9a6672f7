"""The torch backend trains a tiny model with transformers + PEFT: counts, schedule, resume."""
from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.accounting import count
from tunebridge.backends.pytorch import train
from tunebridge.catalogue import get_model
from tunebridge.dialects.hf import PEFT_TARGET
from tunebridge.train.config import TrainConfig
from tunebridge.train.order import epoch_order
from tunebridge.train.schedule import Schedule


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch_backend")
    spec = get_model("tiny-llama")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).save_pretrained(d / "base")
    rng = random.Random(0)
    with open(d / "data.jsonl", "w") as f:
        for _ in range(48):
            n = rng.randint(8, 40)
            p = rng.randint(2, n - 2)
            ids = [rng.randrange(1, spec.vocab_size) for _ in range(n)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100] * p + ids[p:]}) + "\n")
    return spec, d


def _cfg(**kw) -> TrainConfig:
    base = dict(global_batch_size=8, micro_batch_size=2, lr=2e-3, warmup_ratio=0.1, max_steps=12, save_every=6,
                lora={"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": [PEFT_TARGET[p] for p in "qv"]})
    base.update(kw)
    return TrainConfig(**base)


def test_trainable_count_matches_accounting_and_loss_falls(tiny, tmp_path):
    spec, d = tiny
    result = train(d / "base", d / "data.jsonl", tmp_path / "run", _cfg(), progress=False)
    assert result.trainable_params == count(spec, "torch", rank=8, targets=["q", "v"]).trainable_params == 7168
    assert result.total_params == spec.total_params() + 7168
    assert len(result.steps) == 12
    assert result.steps[0].lr == 0.0  # warm-up starts from zero, as Megatron and MindFormers do
    first, last = result.steps[0].loss, sum(s.loss for s in result.steps[-3:]) / 3
    assert last < first
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in logged] == [s.loss for s in result.steps]
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").exists()


def test_resume_gives_the_same_losses(tiny, tmp_path):
    _, d = tiny
    cfg = _cfg()
    full = train(d / "base", d / "data.jsonl", tmp_path / "full", cfg, progress=False)
    # stop after step 6 (the step-6 checkpoint), then resume to 12
    train(d / "base", d / "data.jsonl", tmp_path / "part", _cfg(max_steps=12, save_every=6), progress=False)
    import shutil
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step_000012")
    resumed = train(d / "base", d / "data.jsonl", tmp_path / "part", cfg, resume=True, progress=False)
    # the record is the whole run's: steps 1-6 from before the checkpoint, 7-12 run again, losses bit-exact
    assert [s.step for s in resumed.steps] == list(range(1, 13))
    assert [s.loss for s in resumed.steps] == [s.loss for s in full.steps]


def test_data_order_depends_only_on_seed_and_epoch():
    assert epoch_order(10, 0, 0) == epoch_order(10, 0, 0)
    assert epoch_order(10, 0, 0) != epoch_order(10, 0, 1)
    assert sorted(epoch_order(10, 3, 2)) == list(range(10))


@pytest.mark.parametrize("rounding,expected_warmup", [("megatron", 0.6), ("mindformers", 0.0)])
def test_warmup_rounding_differs_between_stacks(rounding, expected_warmup):
    s = Schedule(1e-3, 0.0, 20, 0.03, "cosine", rounding)
    assert s.warmup_steps == expected_warmup
    assert s.lr_at(20) == 0.0
    if rounding == "mindformers":
        assert s.lr_at(0) == 1e-3  # no warm-up at all: int(20 * 0.03) = 0
    else:
        assert s.lr_at(0) == 0.0


def test_cosine_midpoint_and_end():
    s = Schedule(1.0, 0.1, 110, 10 / 110)
    assert s.lr_at(5) == pytest.approx(0.5)
    assert s.lr_at(10) == pytest.approx(1.0)
    assert s.lr_at(60) == pytest.approx(0.55)
    assert s.lr_at(110) == pytest.approx(0.1)
