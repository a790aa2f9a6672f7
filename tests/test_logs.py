"""Log parsers: every format into RunResult, with interleaved ranks, restarts, colours and cut-off lines."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.backends.pytorch import train
from tunebridge.backends.result import RunResult
from tunebridge.catalogue import get_model
from tunebridge.errors import TunebridgeError
from tunebridge.logs import detect_format, load_run, parse_log
from tunebridge.train.config import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def curve(run: RunResult) -> list[tuple]:
    return [(s.step, s.loss, s.lr, s.grad_norm) for s in run.steps]


def test_mindformers_worker_log_epochs_overflow_and_parameters():
    run = parse_log(FIXTURES / "mindformers_worker_0.log")
    assert run.backend == "mindformers"
    # step counts within the epoch in the log: epoch 2's steps 1-3 are global steps 4-6
    assert curve(run) == [(1, 2.834512, 0.0, 3.1415927), (2, 2.790011, 4.9999997e-05, 2.9871254),
                          (3, 2.701337, 4.9e-05, float("inf")), (4, 2.650248, 4.7e-05, 2.5012345),
                          (5, 2.598876, 4.5e-05, 2.4410133), (6, 2.553301, 4.3e-05, 2.3987001)]
    assert [s.skipped for s in run.steps] == [False, False, True, False, False, False]
    assert [s.loss_scale for s in run.steps] == [1.0, 1.0, 32768.0, 16384.0, 16384.0, 16384.0]
    assert run.trainable_params == 5111808  # "Network Parameters: 5111808."
    assert run.step_time_s == pytest.approx((66913 + 815 + 811 + 817 + 813 + 810) / 6 / 1000)


def test_mindformers_cpu_no_sink_mode_and_a_cut_off_last_line():
    run = parse_log(FIXTURES / "mindformers_cpu_nosink.log")
    # loss:[step loss/running mean]: the step's own loss; no lr on CPU
    assert curve(run) == [(1, 6.238012, None, 1.0761039), (2, 6.101113, None, 1.0523811),
                          (3, 5.987001, None, 1.031112)]
    assert any("mindformers_cpu_nosink.log:8: truncated last line ignored" in n for n in run.notes)


def test_mindformers_two_workers_interleaved_with_a_restart_and_ansi():
    run = parse_log(FIXTURES / "mindformers_tail_two_workers.log")
    # rank 0 (7 loss lines) is kept over rank 1 (3); steps 3-4 of the first attempt are superseded
    assert curve(run) == [(1, 3.000001, 1e-05, 1.5), (2, 2.900002, 1e-05, 1.4), (3, 2.810003, 1e-05, 1.31),
                          (4, 2.710004, 1e-05, 1.21), (5, 2.610005, 1e-05, 1.11)]
    assert "loss lines from several ranks; kept rank 0 (also present: 1)" in run.notes
    assert any(n.startswith("restart at line 14: training resumed at step 3; the earlier records of steps 3-4")
               for n in run.notes)
    rank1 = parse_log(FIXTURES / "mindformers_tail_two_workers.log", rank=1)
    assert curve(rank1) == [(1, 3.100001, 1e-05, 1.5), (2, 2.990002, 1e-05, 1.4), (3, 2.880003, 1e-05, 1.3)]
    with pytest.raises(TunebridgeError, match=r"no loss lines from rank 5 \(ranks with loss lines: 0, 1\)"):
        parse_log(FIXTURES / "mindformers_tail_two_workers.log", rank=5)


def test_mindspeed_llm_torchrun_log_prefixes_restart_truncation_and_peft_count():
    run = parse_log(FIXTURES / "mindspeed_llm_torchrun.log")
    assert run.backend == "mindspeed-llm"
    assert curve(run) == [(1, 2.345678, 0.0, 12.345), (2, 2.2, 1e-05, 10.5), (3, 2.05, 9.5e-06, 9.25),
                          (4, 1.9, 9e-06, 8.125), (5, 1.81, 8.5e-06, 7.6), (6, 1.7, 8e-06, 7.0)]
    assert [s.skipped for s in run.steps] == [False, False, False, True, False, False]
    assert (run.trainable_params, run.total_params) == (2621440, 8032882688)
    assert any("restart at line 17: training resumed at step 5" in n for n in run.notes)
    assert any("mindspeed_llm_torchrun.log:19: truncated last line ignored" in n for n in run.notes)


def test_megatron_log_interval_and_mean_elapsed_time():
    run = parse_log(FIXTURES / "megatron_log_interval.log")
    assert curve(run) == [(2, 2.5, 5e-05, 0.5), (4, 2.25, 2.5e-05, 0.25), (6, 2.0, 1.666667e-05, 0.167),
                          (8, 1.75, 1.25e-05, 0.125)]
    assert run.step_time_s == pytest.approx((902 + 904 + 906 + 908) / 4 / 1000)
    assert "logged every 2 steps (Megatron averages the loss over each log interval)" in run.notes


def test_csv_with_and_without_header():
    assert curve(parse_log(FIXTURES / "curve.csv")) == [(1, 2.5, 0.0, 1.5), (2, 2.25, 1e-05, 1.25),
                                                       (3, 2.0, 1e-05, 1.0)]
    run = parse_log(FIXTURES / "curve_noheader.csv")
    assert curve(run) == [(1, 2.5, None, None), (2, 2.25, None, None), (3, 2.0, None, None)]
    assert any("curve_noheader.csv:4: truncated last line ignored" in n for n in run.notes)


def test_jsonl_truncated_last_record():
    run = parse_log(FIXTURES / "torch_metrics.jsonl")
    assert run.backend == "torch"
    assert [(s.step, s.loss, s.tokens) for s in run.steps] == [(1, 6.2380123, 412), (2, 6.1011128, 398),
                                                             (3, 5.9870011, 405)]
    assert any("torch_metrics.jsonl:4: truncated last line ignored" in n for n in run.notes)


def test_format_detection_by_content(tmp_path):
    for name, fmt in [("mindformers_worker_0.log", "mindformers"), ("mindspeed_llm_torchrun.log", "megatron"),
                      ("curve.csv", "csv"), ("torch_metrics.jsonl", "jsonl")]:
        assert detect_format(FIXTURES / name) == fmt
        renamed = tmp_path / f"{fmt}.txt"
        renamed.write_bytes((FIXTURES / name).read_bytes())
        assert detect_format(renamed) == fmt


def test_a_log_without_loss_lines_names_the_file(tmp_path):
    with pytest.raises(TunebridgeError, match=r"no_loss\.log: no loss lines found \(looked for MindFormers"):
        parse_log(FIXTURES / "no_loss.log")
    empty = tmp_path / "worker_0.log"
    empty.write_text("")
    with pytest.raises(TunebridgeError, match="worker_0.log: empty log file"):
        parse_log(empty)
    with pytest.raises(TunebridgeError, match="no loss lines found in worker_0.log"):
        load_run(tmp_path)
    with pytest.raises(TunebridgeError, match="nowhere: no such run directory or log file"):
        load_run(tmp_path / "nowhere")


def test_bad_records_name_file_and_line(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"step": 1, "loss": 2.0}\n{"step": 2\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(TunebridgeError, match=r"m\.jsonl:2: not JSON"):
        parse_log(bad)
    csv = tmp_path / "c.csv"
    csv.write_text("step,lr\n1,0.1\n")
    with pytest.raises(TunebridgeError, match=r"c\.csv:1: CSV header has no loss column"):
        parse_log(csv)
    csv.write_text("step,loss\n1,abc\n2,1.0\n")
    with pytest.raises(TunebridgeError, match=r"c\.csv:2: could not convert string to float: 'abc'"):
        parse_log(csv)


def test_msrun_log_directory_reads_every_worker(tmp_path):
    lines = (FIXTURES / "mindformers_worker_0.log").read_text().splitlines(keepends=True)
    (tmp_path / "worker_0.log").write_text("".join(lines))
    (tmp_path / "worker_1.log").write_text("".join(line.replace("loss: 2.", "loss: 3.") for line in lines[:6]))
    run = load_run(tmp_path)
    assert [s.loss for s in run.steps][:2] == [2.834512, 2.790011]
    assert "loss lines from several ranks; kept rank 0 (also present: 1)" in run.notes
    assert [s.loss for s in load_run(tmp_path, rank=1).steps] == [3.834512]


def test_torch_backend_run_directory_metrics_and_result(tmp_path):
    """The real torch backend's outputs: result.json and metrics.jsonl parse to the same curve."""
    spec = get_model("tiny-llama")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).save_pretrained(tmp_path / "base")
    rng = random.Random(0)
    with open(tmp_path / "data.jsonl", "w") as f:
        for _ in range(16):
            ids = [rng.randrange(1, spec.vocab_size) for _ in range(12)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100] * 4 + ids[4:]}) + "\n")
    cfg = TrainConfig(global_batch_size=4, micro_batch_size=2, lr=1e-3, max_steps=3,
                      lora={"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    result = train(tmp_path / "base", tmp_path / "data.jsonl", tmp_path / "run", cfg, progress=False)
    from_dir = load_run(tmp_path / "run")
    from_jsonl = parse_log(tmp_path / "run" / "metrics.jsonl")
    assert curve(from_dir) == curve(from_jsonl) == curve(result)
    assert [s.tokens for s in from_jsonl.steps] == [s.tokens for s in result.steps]
    assert from_dir.trainable_params == result.trainable_params
    saved = tmp_path / "again.json"
    from_dir.save(saved)
    assert RunResult.load(saved) == from_dir
