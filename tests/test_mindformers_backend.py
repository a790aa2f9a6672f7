"""The MindFormers backend trains MindFormers' own LlamaForCausalLM + pet_config LoRA on CPU through the bridge.

One run (tiny-llama, LoRA r 8 / alpha 16 on o and down, 8 steps of 4 micro-batches, starting from a PEFT adapter
converted to MindFormers; MindFormers' native optimizer: AdamWeightDecay, no bias correction) is checked against
the accounting, MindFormers' own schedule, its log format, an independent first-step loss from transformers + PEFT,
and the torch backend's loss curve from the same start with the same optimizer semantics.
"""
from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.accounting import count
from tunebridge.adapters import convert_adapter, read_mindformers
from tunebridge.backends.mindformers import train_mindformers
from tunebridge.convert import convert
from tunebridge.data.encode import Sample
from tunebridge.data.writers import write_jsonl, write_mindrecord
from tunebridge.models import get_model
from tunebridge.train.config import TrainConfig
from tunebridge.train.order import micro_batches, step_batches
from tunebridge.train.schedule import Schedule

SEQ = 32
PAD = 0
STEPS = 8


def _cfg(**kw) -> TrainConfig:
    base = dict(global_batch_size=8, micro_batch_size=2, lr=2e-3, warmup_ratio=0.2, max_steps=STEPS,
                warmup_rounding="mindformers", weight_decay=0.01, pad_id=PAD, adam_bias_correction=False,
                lora={"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["o_proj", "down_proj"]})
    base.update(kw)
    return TrainConfig(**base)


def _samples(vocab: int) -> list[Sample]:
    rng = random.Random(0)
    samples = []
    for _ in range(24):
        n = rng.randint(10, SEQ - 1)
        p = rng.randint(2, n - 4)
        ids = [rng.randrange(1, vocab) for _ in range(n)]
        ids[p + 1] = PAD  # a supervised input token equal to the pad id: MindFormers' default would drop it
        samples.append(Sample(ids, [-100] * p + ids[p:]))
    return samples


@pytest.fixture(scope="module")
def run(ms_python, tmp_path_factory):
    d = tmp_path_factory.mktemp("mindformers_backend")
    spec = get_model("tiny-llama")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).save_pretrained(d / "base")
    convert(d / "base", d / "mf", "hf", "mindformers", progress=False)
    samples = _samples(spec.vocab_size)
    write_mindrecord(d / "train.mindrecord", samples, SEQ, PAD)
    write_jsonl(d / "train.jsonl", samples, SEQ)

    from peft import LoraConfig, get_peft_model
    cfg = _cfg()
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(d / "base"), LoraConfig(
        r=8, lora_alpha=16, target_modules=cfg.lora["target_modules"], lora_dropout=0.0))
    with torch.no_grad():  # a non-zero B, so the start adapter changes the first loss
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    peft_model.save_pretrained(d / "init_peft")
    convert_adapter(d / "init_peft", d / "init_mf", "peft", "mindformers", spec)

    batches = step_batches(len(samples), cfg)
    result = train_mindformers(spec, d / "mf" / "model.ckpt", d / "train.mindrecord", batches, cfg, d / "out",
                               init_adapter_ckpt=d / "init_mf" / "lora.ckpt", progress=False)
    return spec, d, samples, batches, cfg, result


def test_counts_equal_the_accounting(run):
    spec, _, _, _, _, result = run
    expected = count(spec, "mindformers", rank=8, targets=["o", "down"]).trainable_params
    assert result.trainable_params == expected == 11264
    assert result.total_params == spec.total_params() + expected
    assert result.environment == {"mindspore": "2.9.0", "mindformers": "1.9.0", "device": "CPU",
                                  "mode": "PYNATIVE + ms.jit"}


def test_loss_falls_and_rates_are_mindformers_own_schedule(run):
    _, _, samples, batches, cfg, result = run
    assert [s.step for s in result.steps] == list(range(1, STEPS + 1))
    assert sum(s.loss for s in result.steps[-3:]) / 3 < result.steps[0].loss
    # CosineWithWarmUpLR (float32) gives the rates of Schedule with MindFormers' warm-up rounding.
    schedule = Schedule(cfg.lr, cfg.min_lr, STEPS, cfg.warmup_ratio, "cosine", "mindformers")
    assert schedule.warmup_steps == 1 and result.steps[0].lr == 0.0
    for k, s in enumerate(result.steps):
        assert s.lr == pytest.approx(schedule.lr_at(k), rel=1e-6, abs=1e-12)
    assert "learning rate from mindformers.core.lr.CosineWithWarmUpLR" in result.notes
    assert result.notes[0].startswith("optimizer mindspore.nn.AdamWeightDecay (adam_bias_correction=False)")
    tokens = [sum(sum(1 for x in samples[i].labels[1:] if x != -100) for i in b) for b in batches]
    assert [s.tokens for s in result.steps] == tokens


def test_worker_log_has_mfloss_monitor_lines(run):
    _, d, _, _, _, result = run
    line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - mindformers\S*\[mindformers/core/callback/callback\.py:"
                      r"\d+\] - INFO - \{ Epoch:\[  1/  3\], step:\[\s+(\d+)/    3\], loss: (\d+\.\d{6}), "
                      r"per_step_time: \d+ms, lr: (\S+), overflow cond: False, loss_scale: 1\.0, "
                      r"global_norm: \[([\d.e+-]+)\]$")
    text = (d / "out" / "worker_0.log").read_text()
    found = [m.groups() for m in map(line.match, text.splitlines()) if m]
    # steps 4-8 are in epoch 2 and 3; only epoch 1 matches the pattern above
    assert [int(g[0]) for g in found] == [1, 2, 3]
    assert [g[1] for g in found] == [f"{s.loss:.6f}" for s in result.steps[:3]]
    assert [float(g[3]) for g in found] == pytest.approx([s.grad_norm for s in result.steps[:3]], rel=1e-6)
    assert text.count("samples/s/p") == STEPS and text.count("{ Epoch:[  3/  3], step:[    2/    3]") == 1


def test_first_step_loss_equals_transformers_peft(run):
    _, d, samples, batches, _, result = run
    from peft import PeftModel
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d / "base"), d / "init_peft")
    losses = []
    with torch.no_grad():
        for mb in micro_batches(batches[0], 2):
            width = max(len(samples[i].input_ids) for i in mb)
            ids = torch.full((len(mb), width), PAD)
            labels = torch.full((len(mb), width), -100)
            for r, i in enumerate(mb):
                ids[r, :len(samples[i].input_ids)] = torch.tensor(samples[i].input_ids)
                labels[r, :len(samples[i].labels)] = torch.tensor(samples[i].labels)
            logits = model(input_ids=ids).logits[:, :-1]
            losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)).item())
    assert result.steps[0].loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    pad_note = next(n for n in result.notes if n.startswith("LlamaConfig.pad_token_id=-1"))
    assert "would have dropped 64 supervised positions" in pad_note  # one per sample, 8 steps of 8


def test_trained_adapter_reads_back(run):
    spec, d, _, _, _, result = run
    (ckpt,) = result.checkpoints
    assert ckpt.endswith("checkpoint_trainable/rank_0/tiny-llama_rank_0-trainable_params-3_2.ckpt")
    trained = read_mindformers(ckpt, spec)
    start = read_mindformers(d / "init_mf", spec)
    assert (trained.rank, trained.alpha) == (8, 16.0)
    assert sorted(trained.pairs) == sorted((p, i) for p in ("o", "down") for i in range(spec.num_layers))
    assert all(not torch.equal(trained.pairs[k][1], start.pairs[k][1]) for k in trained.pairs)


def test_curve_matches_the_torch_backend(run, tmp_path):
    _, d, _, _, cfg, result = run
    from tunebridge.backends.pytorch import train
    ref = train(d / "base", d / "train.jsonl", tmp_path / "torch", cfg, init_adapter=str(d / "init_peft"),
                progress=False)
    assert [s.loss for s in result.steps] == pytest.approx([s.loss for s in ref.steps], rel=2e-5)
    assert [s.grad_norm for s in result.steps] == pytest.approx([s.grad_norm for s in ref.steps], rel=2e-4)
