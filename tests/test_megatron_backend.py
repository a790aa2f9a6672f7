"""The MindSpeed-LLM backend trains a tiny Llama on megatron-core (gloo, CPU): counts, TP parity, the first
loss against transformers + PEFT, Megatron's log lines and a checkpoint that reads back."""
from __future__ import annotations

import random
import re

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.model.accounting import count
from tunebridge.converters.adapters import convert_adapter, read_mcore, read_peft
from tunebridge.backends.mindspeed_llm.run import train_mindspeed_llm
from tunebridge.model.catalogue import get_model
from tunebridge.converters.checkpoint import convert
from tunebridge.data.encode import Sample
from tunebridge.data.writers import write_megatron
from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats.mcore import McoreLayout
from tunebridge.train.config import TrainConfig
from tunebridge.train.order import micro_batches, step_batches
from tunebridge.train.schedule import Schedule

N_SAMPLES = 16
STEPS = 6
LINE = re.compile(
    r"^ \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] iteration +(\d+)/ +(\d+) \| consumed samples: +(\d+) \| "
    r"elapsed time per iteration \(ms\): [\d.]+ \| learning rate: (\d\.\d{6}E[+-]\d\d) \| "
    r"global batch size: +(\d+) \| lm loss: (\d\.\d{6}E[+-]\d\d) \| loss scale: 1\.0 \| "
    r"grad norm: (\d+\.\d{3}) \| number of skipped iterations: +0 \| number of nan iterations: +0 \|$")


def _cfg() -> TrainConfig:
    return TrainConfig(global_batch_size=4, micro_batch_size=2, lr=5e-3, min_lr=1e-4, warmup_ratio=0.2,
                       max_steps=STEPS, clip_grad=1.0, weight_decay=0.01,
                       lora={"rank": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["o_proj", "down_proj"]})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("mindspeed_backend")
    spec = get_model("tiny-llama")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))
    base.save_pretrained(d / "hf")
    peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["o_proj", "down_proj"],
                                           lora_dropout=0.0))
    with torch.no_grad():  # a non-zero B, so the adapter changes the first loss
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    peft.save_pretrained(d / "peft")
    rng = random.Random(0)
    samples = []
    for _ in range(N_SAMPLES):
        n = rng.randint(10, 30)
        p = rng.randint(3, n - 3)
        ids = [rng.randrange(1, spec.vocab_size) for _ in range(n)]
        samples.append(Sample(ids, [-100] * p + ids[p:]))
    write_megatron(d / "data", samples, seq_length=64)
    cfg = _cfg()
    batches = step_batches(N_SAMPLES, cfg)
    runs = {}
    for tp in (1, 2):
        convert(d / "hf", d / f"mc{tp}", "hf", "mcore", tp=tp, progress=False)
        convert_adapter(d / "peft", d / f"lora{tp}", "peft", "mcore", spec, tp=tp)
        runs[tp] = train_mindspeed_llm(spec, d / f"mc{tp}", d / "data", batches, cfg, d / f"run{tp}", tp=tp,
                                       init_adapter=d / f"lora{tp}", progress=False)
    # pipeline: 1F1B over two uneven stages, started from the PEFT directory itself (sharded on the fly)
    convert(d / "hf", d / "mcpp", "hf", "mcore", pp=2, num_layer_list=[1, 3], progress=False)
    runs["pp2"] = train_mindspeed_llm(spec, d / "mcpp", d / "data", batches, cfg, d / "runpp", pp=2,
                                      num_layer_list=[1, 3], init_adapter=d / "peft", progress=False)
    return spec, d, samples, batches, cfg, runs


def test_trainable_count_equals_accounting(setup):
    spec, _, _, _, _, runs = setup
    expected = count(spec, "mindspeed-llm", rank=8, targets=["o", "down"]).trainable_params
    assert expected == 4 * 8 * ((64 + 64) + (160 + 64)) == 11264
    for run in runs.values():
        assert run.trainable_params == expected
        assert run.backend == "mindspeed-llm" and run.environment["megatron-core"] == "0.16.1"
        assert run.total_params == spec.total_params() + expected


@pytest.mark.parametrize("other", [2, "pp2"])
def test_tp2_and_pp2_give_the_losses_of_one_rank(setup, other):
    _, _, _, _, cfg, runs = setup
    one, two = runs[1].steps, runs[other].steps
    assert [s.step for s in one] == [s.step for s in two] == list(range(1, STEPS + 1))
    for a, b in zip(one, two):
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
        assert b.grad_norm == pytest.approx(a.grad_norm, rel=1e-5)
        assert a.lr == b.lr
        assert a.tokens == b.tokens
    schedule = Schedule(cfg.lr, cfg.min_lr, STEPS, cfg.warmup_ratio, cfg.lr_schedule, cfg.warmup_rounding)
    assert [s.lr for s in one] == [schedule.lr_at(k) for k in range(STEPS)]
    assert one[-1].loss < one[0].loss


def test_first_loss_equals_transformers_and_peft(setup):
    spec, d, samples, batches, cfg, runs = setup
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d / "hf"), d / "peft").eval()
    losses, tokens = [], 0
    with torch.no_grad():
        for mb in micro_batches(batches[0], cfg.micro_batch_size):
            loss_sum, n = 0.0, 0
            for i in mb:  # one sample at a time: no padding at all on this side
                ids = torch.tensor([samples[i].input_ids])
                labels = torch.tensor(samples[i].labels[1:])
                logits = model(input_ids=ids).logits[0, :-1]
                loss_sum += F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
                n += int((labels != -100).sum())
            losses.append(loss_sum / n)
            tokens += n
    expected = sum(losses) / len(losses)
    assert runs[1].steps[0].loss == pytest.approx(expected, rel=1e-5)
    assert runs[1].steps[0].tokens == tokens


def test_log_has_megatron_lines(setup):
    _, d, _, _, cfg, runs = setup
    lines = (d / "run2" / "logs" / "train.log").read_text().splitlines()
    assert len(lines) == STEPS
    schedule = Schedule(cfg.lr, cfg.min_lr, STEPS, cfg.warmup_ratio, cfg.lr_schedule, cfg.warmup_rounding)
    for k, (line, step) in enumerate(zip(lines, runs[2].steps)):
        m = LINE.match(line)
        assert m, line
        it, total, consumed, lr, gbs, loss, norm = m.groups()
        assert (int(it), int(total), int(consumed), int(gbs)) == (k + 1, STEPS, (k + 1) * 4, 4)
        assert float(loss) == pytest.approx(step.loss, rel=1e-6)
        assert float(norm) == pytest.approx(step.grad_norm, abs=6e-4)
        assert lr == f"{schedule.lr_at(k + 1):.6E}"  # Megatron logs the rate after the scheduler step


@pytest.mark.parametrize("run,grid", [("run2", (2, 1)), ("runpp", (1, 2))])
def test_checkpoint_reads_back_with_the_trained_lora(setup, run, grid):
    spec, d, _, _, _, runs = setup
    layout = McoreLayout(d / run / "checkpoint")
    assert (layout.tp, layout.pp) == grid
    assert layout.iter_dir.name == f"iter_{STEPS:07d}"
    assert (d / run / "checkpoint" / "latest_checkpointed_iteration.txt").read_text() == str(STEPS)
    trained, start = read_mcore(d / run / "checkpoint", spec), read_peft(d / "peft", spec)
    tp1 = read_mcore(d / "run1" / "checkpoint", spec)
    assert (trained.rank, trained.alpha) == (8, 16.0)
    assert sorted(trained.pairs) == sorted(start.pairs)
    for k, (a, b) in trained.pairs.items():
        assert not torch.equal(a, start.pairs[k][0]) and not torch.equal(b, start.pairs[k][1])
        torch.testing.assert_close(a, tp1.pairs[k][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(b, tp1.pairs[k][1], rtol=0, atol=1e-5)


def test_refusals(setup, tmp_path):
    spec, d, _, batches, cfg, _ = setup
    with pytest.raises(TunebridgeError, match=r"converted with num_layer_list \[1, 3\], the run asks \[2, 2\]"):
        train_mindspeed_llm(spec, d / "mcpp", d / "data", batches, cfg, tmp_path, pp=2, num_layer_list=[2, 2])
    with pytest.raises(TunebridgeError, match="converted for tp=1"):
        train_mindspeed_llm(spec, d / "mc1", d / "data", batches, cfg, tmp_path, tp=2)
    with pytest.raises(TunebridgeError, match="outside the 16 samples"):
        train_mindspeed_llm(spec, d / "mc1", d / "data", [[0, 1, 2, 99]], cfg, tmp_path)
