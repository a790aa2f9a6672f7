"""The torch backend trains a tiny model with transformers + PEFT: counts, schedule, resume."""
from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.model.accounting import count
from tunebridge.backends.pytorch import train
from tunebridge.model.catalogue import get_model
from tunebridge.model.dialects.hf import PEFT_TARGET
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
    torch.manual_seed(1)
    first = epoch_order(10, 0, 0)
    torch.manual_seed(2)  # the global generator, seeded and drawn from differently, changes nothing
    torch.rand(7)
    random.seed(3)
    assert epoch_order(10, 0, 0) == first
    assert sorted(first) == list(range(10)) and first != list(range(10))
    orders = {tuple(epoch_order(10, seed, epoch)) for seed in (0, 1, 2) for epoch in (0, 1, 2)}
    assert len(orders) == 9  # each (seed, epoch) its own order: seed 0 epoch 1 is not seed 1 epoch 0


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


def _reference_losses(model_dir, records: list[dict], batches: list[list[int]], micro: int, average: str) -> list[float]:
    """Each step's loss by hand: transformers' own mean next-token loss per sample (no padding), weighted by its
    supervised tokens, then the token mean of each micro-batch averaged over the micro-batches (or the token
    mean of the whole global batch)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    sums, counts = [], []
    with torch.no_grad():
        for r in records:
            n = sum(1 for x in r["labels"][1:] if x != -100)
            loss = model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]])).loss
            sums.append(loss.item() * n)
            counts.append(n)
    out = []
    for batch in batches:
        if average == "token":
            out.append(sum(sums[i] for i in batch) / sum(counts[i] for i in batch))
            continue
        parts = [batch[i:i + micro] for i in range(0, len(batch), micro)]
        out.append(sum(sum(sums[i] for i in mb) / sum(counts[i] for i in mb) for mb in parts) / len(parts))
    return out


@pytest.mark.parametrize("average", ["micro-batch", "token"])
def test_losses_equal_a_hand_computed_reference(tiny, tmp_path, average):
    """lr 0 keeps the weights (the initial LoRA B is zero): every step's loss is the base model's on its batch,
    averaged as the stack does: 4 micro-batches of 2 make a global batch of 8."""
    from tunebridge.train.order import step_batches
    _, d = tiny
    cfg = _cfg(lr=0.0, max_steps=3, save_every=0, loss_average=average, lora={**_cfg().lora, "dropout": 0.0})
    records = [json.loads(line) for line in (d / "data.jsonl").read_text().splitlines()]
    result = train(d / "base", d / "data.jsonl", tmp_path / "run", cfg, progress=False)
    want = _reference_losses(d / "base", records, step_batches(len(records), cfg), cfg.micro_batch_size, average)
    assert [s.loss for s in result.steps] == pytest.approx(want, rel=1e-5)
    tokens = [sum(sum(1 for x in records[i]["labels"][1:] if x != -100) for i in b)
              for b in step_batches(len(records), cfg)]
    assert [s.tokens for s in result.steps] == tokens


def test_full_finetuning_decays_matrices_only(tmp_path):
    """A full fine-tune of a model with q/k/v biases: weight decay shrinks the 2-D weights by lr x wd x w (torch's
    decoupled decay), and leaves biases and norms (1-D) alone, as Megatron and MindFormers group them."""
    from tunebridge.train.optim import decay_groups
    spec = get_model("tiny-qwen2")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))
    model.save_pretrained(tmp_path / "base")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = random.Random(1)
    with open(tmp_path / "data.jsonl", "w") as f:
        for _ in range(4):
            ids = [rng.randrange(1, spec.vocab_size) for _ in range(10)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100] * 3 + ids[3:]}) + "\n")
    after = {}
    for wd in (0.0, 0.5):
        cfg = TrainConfig(global_batch_size=4, micro_batch_size=2, lr=0.1, max_steps=1, weight_decay=wd,
                          clip_grad=0.0)
        result = train(tmp_path / "base", tmp_path / "data.jsonl", tmp_path / f"wd{wd}", cfg, progress=False)
        assert result.trainable_params == result.total_params == spec.total_params()
        tuned = AutoModelForCausalLM.from_pretrained(tmp_path / f"wd{wd}" / "final")
        after[wd] = {n: p.detach() for n, p in tuned.named_parameters()}
    one_d = [n for n, p in before.items() if p.ndim == 1]
    assert any(n.endswith("self_attn.q_proj.bias") for n in one_d) and any(n.endswith("norm.weight") for n in one_d)
    for name, p0 in before.items():
        shrink = after[0.0][name] - after[0.5][name]  # the decay alone: lr x wd x p0
        if p0.ndim == 1:
            assert torch.equal(shrink, torch.zeros_like(p0)), name
        else:
            assert torch.allclose(shrink, 0.1 * 0.5 * p0, atol=1e-6), name
    named = list(model.named_parameters())
    decay, no_decay = decay_groups(named, 0.5)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.5, 0.0)
    assert {id(p) for p in no_decay["params"]} == {id(p) for n, p in named if p.ndim == 1}
    assert len(decay["params"]) + len(no_decay["params"]) == len(named)
