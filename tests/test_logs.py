"""Log parsers: every format into RunResult, with interleaved ranks, restarts, colours and cut-off lines."""
from __future__ import annotations

import json
import math
import re
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.backends.pytorch import train
from tunebridge.backends.result import RunResult
from tunebridge.model.catalogue import get_model
from tunebridge.errors import TunebridgeError
from tunebridge.parity.logs import detect_format, load_run, parse_log
from tunebridge.train.config import TrainConfig

from .snapshot import assert_snapshot

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
    # a worker killed mid-line: its cut-off line is dropped, the workers after it are still read
    (tmp_path / "worker_0.log").write_text("".join(lines) + lines[4][:130])
    run = load_run(tmp_path, rank=1)
    assert [s.loss for s in run.steps] == [3.834512]
    assert f"{tmp_path}:{len(lines) + 1}: truncated last line ignored" in run.notes


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


MEGATRON_LINE = (" [2025-03-05 10:00:0{i}] iteration        {i}/       4 | consumed samples:            8 | elapsed time "
                 "per iteration (ms): 900.0 | learning rate: {lr} | global batch size:     4 | lm loss: {loss} | "
                 "loss scale: 1.0 | grad norm: {norm} | number of skipped iterations:   0 | number of nan iterations:   0 |\n")
MINDFORMERS_LINE = ("2025-03-01 10:01:1{i},834 - mindformers[mindformers/core/callback/callback.py:747] - INFO - "
                    "{{ Epoch:[  1/  1], step:[    {i}/    4], loss: {loss}, per_step_time: 815ms, lr: {lr}, "
                    "overflow cond: False, loss_scale: 1.0, global_norm: [{norm}], train_throughput_per_npu: 1.2T\n")


@pytest.mark.parametrize("template", [MEGATRON_LINE, MINDFORMERS_LINE], ids=["megatron", "mindformers"])
def test_nan_negative_and_exponent_figures_are_read(tmp_path, template):
    values = [("nan", "1.000000E-05", "nan"), ("-1.250000E-01", "2.5e-06", "-0.5"),
              ("1.5E+01", "3E-04", "1.25e+02"), ("3.25e-03", "0.0", "inf")]
    log = tmp_path / "train.log"
    log.write_text("".join(template.format(i=i, loss=loss, lr=lr, norm=norm)
                           for i, (loss, lr, norm) in enumerate(values, 1)))
    run = parse_log(log)
    assert [s.step for s in run.steps] == [1, 2, 3, 4]
    assert math.isnan(run.steps[0].loss) and math.isnan(run.steps[0].grad_norm)
    assert [(s.loss, s.lr, s.grad_norm) for s in run.steps[1:]] == [(-0.125, 2.5e-06, -0.5), (15.0, 3e-04, 125.0),
                                                                    (0.00325, 0.0, math.inf)]


def test_ranks_with_as_many_loss_lines_keep_the_lowest(tmp_path):
    line = MEGATRON_LINE.format(i=1, loss="{loss}", lr="1.0E-05", norm="1.0")
    log = tmp_path / "train.log"
    # ranks 2 and 1 tie with two loss lines each (rank 2 first in the file), rank 3 has one
    log.write_text("".join(f"[rank{r}]:" + line.replace("iteration        1/", f"iteration        {i}/")
                           .format(loss=f"{r}.{i}") for r, i in [(2, 1), (1, 1), (3, 1), (2, 2), (1, 2)]))
    run = parse_log(log)
    assert [s.loss for s in run.steps] == [1.1, 1.2]
    assert "loss lines from several ranks; kept rank 1 (also present: 2, 3)" in run.notes
    assert [s.loss for s in parse_log(log, rank=2).steps] == [2.1, 2.2]
    # unprefixed lines tie with rank 0: the unprefixed ones are kept, as the lowest
    log.write_text(line.format(loss="9.1") + "[rank0]:" + line.format(loss="0.1"))
    run = parse_log(log)
    assert [s.loss for s in run.steps] == [9.1]
    assert "loss lines from several ranks; kept unprefixed lines (also present: 0)" in run.notes


def test_every_fixture_log_reads_to_the_held_run(tmp_path):
    """Every field of the run each fixture log gives (steps, notes, source, environment), held as a snapshot;
    the paths in it are relative to the fixtures."""
    (tmp_path / "msrun").mkdir()
    for rank in (0, 1):
        (tmp_path / "msrun" / f"worker_{rank}.log").write_bytes(
            (FIXTURES / "mindformers_worker_0.log").read_bytes().replace(b"loss: 2.", f"loss: {2 + rank}.".encode()))
    runs = {path.name: parse_log(path) for path in sorted(FIXTURES.iterdir()) if path.name != "no_loss.log"}
    runs["mindformers_tail_two_workers.log, rank 1"] = parse_log(FIXTURES / "mindformers_tail_two_workers.log", rank=1)
    runs["msrun directory"] = load_run(tmp_path / "msrun")
    runs["msrun directory, rank 1"] = load_run(tmp_path / "msrun", rank=1)
    runs["megatron log given as megatron"] = parse_log(FIXTURES / "megatron_log_interval.log", fmt="megatron")

    def held(run: RunResult) -> dict:
        text = json.dumps(run.to_dict()).replace(str(FIXTURES), "FIXTURES").replace(str(tmp_path), "TMP")
        return json.loads(text)
    assert_snapshot("log_runs", {name: held(run) for name, run in runs.items()})


def test_csv_and_jsonl_columns(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("Iteration,LM Loss,learning_rate,global_norm,tokens,skipped\n1,2.5,0.1,1.5,12,True\n"
                   "2,2.25,,,7,true\n3,2.0,0.1,,,1\n4,1.5,0.1,,,0\n")
    run = parse_log(csv)
    assert [(s.step, s.loss, s.lr, s.grad_norm, s.tokens, s.skipped) for s in run.steps] == [
        (1, 2.5, 0.1, 1.5, 12, True), (2, 2.25, None, None, 7, True), (3, 2.0, 0.1, None, None, True),
        (4, 1.5, 0.1, None, None, False)]
    assert run.notes == [f"read from {csv} (csv log)"] and run.source == str(csv) and run.backend == "csv"
    csv.write_text("1,2.5\n2,2.25,0.5\n")
    with pytest.raises(TunebridgeError, match=r"^" + re.escape(f"{csv}:2: 3 values for 2 columns ['step', 'loss']")):
        parse_log(csv)
    csv.write_text("1,2.5\n2,2.25,0.5")  # a last line that is longer than the header: cut off mid-write
    assert [s.step for s in parse_log(csv).steps] == [1]
    csv.write_text("step,lr\n1,0.1\n")
    with pytest.raises(TunebridgeError, match=r"^" + re.escape(f"{csv}:1: CSV header has no loss column "
                                                                f"(has ['step', 'lr'])")):
        parse_log(csv)
    csv.write_text("LR,loss\n1,0.1\n")
    with pytest.raises(TunebridgeError, match=re.escape("CSV header has no step column")):
        parse_log(csv)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"step": 1, "loss": 2.0, "tokens": 5, "skipped": false}\n{"step": 2, "loss": 1.5}\n')
    run = parse_log(jsonl)
    assert [(s.step, s.loss, s.tokens, s.skipped) for s in run.steps] == [(1, 2.0, 5, False), (2, 1.5, None, None)]
    assert run.notes == [f"read from {jsonl} (jsonl log)"] and run.source == str(jsonl) and run.backend == "torch"
    for text, message in [('{"step": 1, "loss": 2.0}\n[1, 2]\n', "m.jsonl:2: expected a JSON object per line"),
                          ('{"step": 1}\n', "m.jsonl:1: no 'loss' value"),
                          ('{"loss": 1.0}\n', "m.jsonl:1: no 'step' value"),
                          ('{"step": "", "loss": 1.0}\n', "m.jsonl:1: no 'step' value"),
                          ('{"step": 1, "loss": 1.0, "lr": "fast"}\n',
                           "m.jsonl:1: could not convert string to float: 'fast'")]:
        jsonl.write_text(text)
        with pytest.raises(TunebridgeError, match=r"^" + re.escape(f"{tmp_path}/{message}") + "$"):
            parse_log(jsonl)


def test_errors_name_what_is_wrong(tmp_path):
    cases = [
        (lambda: parse_log(tmp_path / "gone.log"), f"{tmp_path}/gone.log: no such log file"),
        (lambda: parse_log(tmp_path), f"{tmp_path}: is a directory, not a log file"),
        (lambda: parse_log(FIXTURES / "curve.csv", fmt="tensorboard"),
         "unknown log format 'tensorboard' (known: mindformers, megatron, jsonl, csv, result)"),
        (lambda: parse_log(tmp_path / "result.json"), f"{tmp_path}/result.json: no such file"),
        (lambda: load_run(tmp_path), f"{tmp_path}: a directory without result.json, metrics.jsonl or worker_*.log"),
    ]
    for call, message in cases:
        with pytest.raises(TunebridgeError, match="^" + re.escape(message) + "$"):
            call()
    (tmp_path / "result.json").write_text("[]")
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{tmp_path}/result.json: not a tunebridge result.json")):
        parse_log(tmp_path / "result.json")
    (tmp_path / "result.json").unlink()
    (tmp_path / "worker_0.log").write_text("nothing here\n")
    (tmp_path / "worker_1.log").write_text("nor here\n")
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{tmp_path}: no loss lines found in worker_0.log, "
                                                               f"worker_1.log (looked for MindFormers")):
        load_run(tmp_path)
    megatron = tmp_path / "m.log"
    megatron.write_text("iteration 1/2 | consumed samples: 8 | grad norm: 1.0 |\n")  # no loss field
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{megatron}: no loss lines found (looked for")):
        parse_log(megatron)
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{megatron}: no loss lines found in this megatron log")):
        parse_log(megatron, fmt="megatron")


def test_lines_of_a_log(tmp_path):
    """Colour codes, progress-bar segments and invalid bytes; the rank from each prefix or tail header."""
    from tunebridge.parity.logs.lines import clean_lines
    log = tmp_path / "worker_3.log"
    log.write_bytes(b"\x1b[32mgreen\x1b[0m text\n[rank1]: a\rb\r\n==> x/worker_7.log <==\nbad \xff byte\n"
                    b"[1,2]<stdout>: mpi\n  4: srun\nworker_5.log: grep\ndone\rlast")
    got = [(line.number, line.rank, line.text, line.terminated) for line in clean_lines(log)]
    assert got == [(1, 3, "green text", True), (2, 1, "a", True), (2, 3, "b", True), (4, 7, "bad \ufffd byte", True),
                   (5, 2, "mpi", True), (6, 4, "srun", True), (7, 5, "grep", True), (8, 7, "done", True),
                   (8, 7, "last", False)]  # a progress bar's earlier segments are whole, even on a cut-off line


def test_mindformers_eval_log_pairs_and_totals():
    from tunebridge.parity.logs.mindformers import emf1_results
    text = ("noise\npred is:\n ['Denver', 'x']\n label is:\n ['Denver Broncos', 'y']\npred is:\n ['a']\n"
            " label is:\n ['b']\nF1 score: 63.88, Em score: 62.5, total_count: 16\npred is:\n ['cut']\n")
    pairs, total = emf1_results(text)
    assert pairs == [("Denver", "Denver Broncos"), ("x", "y"), ("a", "b")]
    assert total == {"F1": 63.88, "Em": 62.5, "count": 16}
    assert emf1_results("pred is:\n ['a']\n label is:\n") == ([], None)
    assert emf1_results("pred is:\n ['a']\n label is:\n ['b']") == ([("a", "b")], None)  # the log's last lines


def test_a_line_with_only_step_and_loss_leaves_every_other_figure_unknown():
    from tunebridge.parity.logs import megatron, mindformers
    record, seconds = megatron.parse_line(" iteration        3/      20 | lm loss: 2.5 |")
    assert (record.step, record.loss, record.lr, record.grad_norm, record.loss_scale, record.skipped, seconds) == (
        3, 2.5, None, None, None, None, None)
    record, seconds = mindformers.parse_line("{ Epoch:[  2/  3], step:[    4/  10], loss: 2.5")
    assert (record.step, record.loss, record.lr, record.grad_norm, record.loss_scale, record.skipped, seconds) == (
        14, 2.5, None, None, None, None, None)
    # an empty numpy array where a figure was not computed
    assert mindformers.parse_line("{ Epoch:[  1/  1], step:[  1/  1], loss: 2.5, global_norm: []")[0].grad_norm is None


def test_the_format_is_the_name_s_before_the_content_s(tmp_path):
    empty = tmp_path / "metrics.jsonl"
    empty.write_text("")
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{empty}: no loss lines found in this jsonl log")):
        parse_log(empty)
    prose = tmp_path / "notes.log"  # a line about the loss is not a CSV header
    prose.write_text("the loss went down\n")
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{prose}: no loss lines found (looked for")):
        parse_log(prose)


def test_restarts_in_records_name_the_line_and_every_superseded_step(tmp_path):
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("".join(json.dumps({"step": s, "loss": loss}) + "\n"
                             for s, loss in [(1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0), (2, 3.5), (3, 2.5)]))
    run = parse_log(jsonl)
    assert [(s.step, s.loss) for s in run.steps] == [(1, 4.0), (2, 3.5), (3, 2.5)]
    assert run.notes[1:] == ["restart at line 5: training resumed at step 2; the earlier records of steps 2-4 are "
                             "superseded (the last occurrence of a step wins)"]


def test_steps_and_token_counts_are_whole_numbers(tmp_path):
    csv = tmp_path / "c.csv"
    for row, message in [("2.5,1.0,3", "invalid literal for int() with base 10: '2.5'"),
                         ("2,1.0,7.5", "invalid literal for int() with base 10: '7.5'")]:
        csv.write_text(f"step,loss,tokens\n{row}\n")
        with pytest.raises(TunebridgeError, match="^" + re.escape(f"{csv}:2: {message}") + "$"):
            parse_log(csv)


def test_only_a_cut_off_last_record_is_skipped(tmp_path):
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"step": 1, "lo\n{"step": 2, "loss": 1.0}')  # no newline at the end, a broken first line
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{jsonl}:1: not JSON")):
        parse_log(jsonl)


def test_run_directories_and_log_files_as_a_run(tmp_path):
    run_dir = tmp_path / "run"  # a torch run stopped before its result.json: the metrics it wrote
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    assert [(s.step, s.loss) for s in load_run(run_dir).steps] == [(1, 2.0)]
    two_workers = FIXTURES / "mindformers_tail_two_workers.log"
    assert load_run(two_workers, rank=1) == parse_log(two_workers, rank=1) != parse_log(two_workers)
    result = tmp_path / "result.json"  # a result.json without its source: the file it was read from
    saved = parse_log(run_dir / "metrics.jsonl")
    saved.source = None
    saved.save(result)
    assert load_run(result).source == str(result)


def test_the_ranks_of_a_log_in_order_unprefixed_first(tmp_path):
    line = MEGATRON_LINE.format(i=1, loss="{loss}", lr="1.0E-05", norm="1.0")
    log = tmp_path / "train.log"
    # rank 0 has the most loss lines; unprefixed lines (a launcher's own output), ranks 2 and 1 fewer
    log.write_text("".join(prefix + line.replace("iteration        1/", f"iteration        {i}/").format(loss=f"{i}.5")
                           for prefix, i in [("[rank2]:", 1), ("", 1), ("[rank0]:", 1), ("[rank1]:", 1),
                                             ("[rank0]:", 2)]))
    assert "loss lines from several ranks; kept rank 0 (also present: unprefixed, 1, 2)" in parse_log(log).notes
    with pytest.raises(TunebridgeError, match="^" + re.escape(f"{log}: no loss lines from rank 5 (ranks with loss "
                                                               f"lines: unprefixed, 0, 1, 2)") + "$"):
        parse_log(log, rank=5)


def test_megatrons_log_line_with_the_load_balancing_loss_reads():
    from tunebridge.parity.logs.megatron import parse_line

    # a mixture of experts' line: the auxiliary loss after lm loss, read apart from it
    line = (" [2026-01-01 00:00:00] iteration        2/       8 | consumed samples:           16 | elapsed time per "
            "iteration (ms): 812.3 | learning rate: 1.000000E-05 | global batch size:     8 | lm loss: 5.806243E+00 |"
            " load_balancing_loss: 1.424224E+00 | loss scale: 1.0 | grad norm: 0.912 | number of skipped "
            "iterations:   0 | number of nan iterations:   0 |")
    record, _ = parse_line(line)
    assert (record.loss, record.load_balancing_loss) == (5.806243, 1.424224)
