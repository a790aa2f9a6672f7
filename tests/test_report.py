"""Reports: Markdown + one self-contained HTML, atomic and refusing to overwrite; rendered in headless Chromium."""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from tunebridge.backends.pytorch import train
from tunebridge.model.catalogue import get_model
from tunebridge.cli import compare as compare_cli
from tunebridge.cli import report as report_cli
from tunebridge.errors import TunebridgeError
from tunebridge.parity.logs import parse_log
from tunebridge.parity.verdicts import loss_checks, params_across
from tunebridge.recipe.schema import load_recipe
from tunebridge.parity.report import write_report
from tunebridge.train.config import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
RECIPE = Path(__file__).parent.parent / "recipes" / "tiny-demo-lora.yaml"
CHROMIUM = Path("/usr/bin/chromium")


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tunebridge")
    sub = parser.add_subparsers()
    report_cli.register(sub)
    compare_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    runs = {"mindformers": parse_log(FIXTURES / "mindformers_worker_0.log"),
            "mindspeed-llm": parse_log(FIXTURES / "mindspeed_llm_torchrun.log")}
    recipe = load_recipe(RECIPE)
    reports = [recipe.param_report(b) for b in ("torch", "mindformers", "mindspeed-llm")]
    table = [{**r.to_dict(), "accuracy": acc} for r, acc in zip(reports, (0.42, 0.41, None))]
    verdicts = [params_across(reports, recipe.spec), *loss_checks(runs["mindformers"], runs["mindspeed-llm"],
                                                                  "mindformers", "mindspeed-llm")]
    out = tmp_path_factory.mktemp("report") / "out"
    write_report(out, runs, verdicts, params_table=table, metrics_table={"torch": {"accuracy": 0.42, "f1": 65.42},
                                                                         "mindformers": {"accuracy": 0.41}},
                 recipe=RECIPE)
    return out


def test_markdown_has_every_section(report_dir):
    md = (report_dir / "report.md").read_text()
    for heading in ("# tunebridge parity report", "## Recipe", "## Parameters", "## Runs", "## Loss curves",
                    "## Metrics", "## Parity verdicts", "## Versions and hardware"):
        assert heading in md
    assert "name: tiny-demo-lora" in md
    # contest score = (1 - 11,264 / 238,144) * 0.3 + 0.42 * 0.7
    # every figure in its unit: the ratio and the accuracy as fractions, PEFT's trainable share in percent
    assert "| backend | total | trainable | low-param ratio (fraction) | PEFT trainable (percent) | exact | " \
           "accuracy (fraction) | contest score (fraction) |" in md
    assert "| torch | 238,144 | 11,264 | 0.0472991 | 4.51629 | yes | 0.42 | 0.579810 |" in md
    assert "| PASS | parameters: across backends |" in md
    assert "| FAIL | loss, first step: mindspeed-llm vs mindformers | step 1, mindformers loss 2.835, " \
           "mindspeed-llm loss 2.346, rel error 17.25 %, abs error 0.4888 | rel < 0.5 % or abs < 0.005 |" in md
    assert "| 1 | 2.83451 | 2.34568 | 17.2 % |" in md
    assert "| run | accuracy (fraction) | SQuAD F1 (percent) |" in md
    assert "| torch | 0.42 | 65.42 |" in md and "| mindformers | 0.41 | - |" in md
    assert "![loss curves and relative error](loss.png)" in md
    assert (report_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdicts_come_first(report_dir):
    """A reader sees the summary (counts, the worst figure of each kind of check) before any detail."""
    md = (report_dir / "report.md").read_text()
    order = [md.index(h) for h in ("## Summary", "## Parity verdicts", "## Parameters", "## Loss curves",
                                   "## Recipe", "## Versions and hardware")]
    assert order == sorted(order)
    assert "1 of 4 checks pass (3 FAIL)." in md
    assert "| loss, first step | 0 | 1 | loss, first step: mindspeed-llm vs mindformers | step 1, " in md
    assert "| parameters | 1 | 0 | parameters: across backends |" in md
    assert "<details>" not in (report_dir / "report.html").read_text()  # 6 steps: nothing to fold


def test_long_per_step_tables_fold():
    from tunebridge.backends.result import RunResult, StepRecord
    from tunebridge.parity.report import build
    from tunebridge.parity.report.document import to_html, to_markdown
    runs = {name: RunResult("torch", [StepRecord(s, 2.0 / s + d, 1e-3) for s in range(1, 41)])
            for name, d in (("a", 0.0), ("b", 1e-7))}
    blocks = build(runs, [])
    assert "<details><summary>loss per step (40 steps)</summary><table>" in to_html(blocks, "t")
    assert "| 40 | 0.05 | 0.0500001 | 0.0002 % |" in to_markdown(blocks)  # Markdown keeps the table open


def test_relative_error_plot_is_on_a_log_scale():
    """Parity runs agree to 1e-8..1e-6 %: on a linear axis they would all sit on 0."""
    from tunebridge.backends.result import RunResult, StepRecord
    from tunebridge.parity.report.plots import loss_plot
    a = RunResult("torch", [StepRecord(s, 2.0 - 0.1 * s, 1e-3) for s in range(1, 6)])
    b = RunResult("mindformers", [StepRecord(s, (2.0 - 0.1 * s) * (1 + 1e-8 * s), 1e-3) for s in range(1, 6)])
    b.steps[0].loss = a.steps[0].loss  # an exact step: left out of the log axis, counted in the legend
    fig = loss_plot({"a": a, "b": b})
    bottom = fig.axes[1]
    assert bottom.get_yscale() == "log"
    line = bottom.get_lines()[0]
    assert list(line.get_xdata()) == [2, 3, 4, 5] and 1e-7 < min(line.get_ydata()) < 1e-5
    assert "(1 steps equal, not shown)" in bottom.get_legend().get_texts()[0].get_text()


def test_html_is_self_contained(report_dir):
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:)""", page)
    assert "<link" not in page and "http://" not in page and "https://" not in page
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 1 and base64.b64decode(uris[0]) == (report_dir / "loss.png").read_bytes()
    # the summary (one row per kind of check) and the verdicts
    assert page.count('<tr class="fail">') == 3 + 3 and page.count('<tr class="pass">') == 1 + 1


def test_existing_directory_needs_force(report_dir, tmp_path):
    runs = {"a": parse_log(FIXTURES / "curve.csv")}
    before = (report_dir / "report.md").read_text()
    with pytest.raises(TunebridgeError, match=r"out: already exists \(pass --force to overwrite\)"):
        write_report(report_dir, runs, [])
    assert (report_dir / "report.md").read_text() == before
    target = tmp_path / "r"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    write_report(target, runs, [], force=True)
    assert sorted(p.name for p in target.iterdir()) == ["loss.png", "report.html", "report.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=60)


def _body_marks(html_path: Path, tmp_path: Path) -> dict[str, str]:
    dom = _chromium(["--dump-dom", html_path.resolve().as_uri()], tmp_path).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))


def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing (install Debian's chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    html = report_dir / "report.html"
    assert _body_marks(html, tmp_path) == {"images": "1", "images-ok": "true", "script-errors": "0"}
    shot = tmp_path / "report.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,3000", html.resolve().as_uri()], tmp_path)
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (3000, 1200)
    assert (pixels[..., :3].std(axis=(0, 1)) > 0.05).all()  # not a blank page
    # the check can fail: a page with a broken image is reported as such
    broken = tmp_path / "broken.html"
    broken.write_text(html.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    assert _body_marks(broken, tmp_path)["images-ok"] == "false"


def test_compare_cli_exit_status_and_table(tmp_path, capsys):
    perturbed = tmp_path / "perturbed.csv"
    perturbed.write_text("step,loss\n1,2.5\n2,2.3\n3,2.1\n")
    assert cli(["compare", str(FIXTURES / "curve.csv"), str(FIXTURES / "curve.csv")]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["step", "curve", "curve#2", "rel", "curve#2"] in rows and ["1", "2.500000", "2.500000", "0%"] in rows
    assert "PASS  loss, mean over steps: curve#2 vs curve" in out
    assert cli(["compare", str(FIXTURES / "curve.csv"), str(perturbed), "--names", "ref,new"]) == 1
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["2", "2.250000", "2.300000", "2.22%"] in rows and ["3", "2.000000", "2.100000", "5%"] in rows
    assert "PASS  loss, first step: new vs ref" in out
    assert "FAIL  loss, mean over steps: new vs ref: steps 3, mean rel error 2.407 %" in out
    with pytest.raises(TunebridgeError, match="--names gives 1 names for 2 runs"):
        cli(["compare", str(FIXTURES / "curve.csv"), str(perturbed), "--names", "x"])
    with pytest.raises(TunebridgeError, match="need at least 2 runs or logs, got 1"):
        cli(["compare", str(FIXTURES / "curve.csv")])


def _tiny_torch_runs(tmp_path: Path) -> tuple[Path, Path, Path]:
    spec = get_model("tiny-llama")
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config())).save_pretrained(tmp_path / "base")
    rng = random.Random(0)
    with open(tmp_path / "data.jsonl", "w") as f:
        for _ in range(16):
            ids = [rng.randrange(1, spec.vocab_size) for _ in range(12)]
            f.write(json.dumps({"input_ids": ids, "labels": [-100] * 4 + ids[4:]}) + "\n")
    lora = {"rank": 8, "alpha": 16, "dropout": 0.0,
            "target_modules": ["o_proj", "down_proj"]}  # as recipes/tiny-demo-lora.yaml
    dirs = []
    for name, lr in (("a", 2e-3), ("b", 2e-3), ("fast", 5e-2)):
        cfg = TrainConfig(global_batch_size=4, micro_batch_size=2, lr=lr, max_steps=4, lora=lora)
        train(tmp_path / "base", tmp_path / "data.jsonl", tmp_path / name, cfg, progress=False)
        dirs.append(tmp_path / name)
    return tuple(dirs)


def test_report_cli_on_real_torch_runs(tmp_path, capsys):
    a, b, fast = _tiny_torch_runs(tmp_path)
    assert cli(["compare", str(a), str(b)]) == 0  # same seed, same data: the same curve
    assert "mean rel error 0 %" in capsys.readouterr().out
    out = tmp_path / "report"
    assert cli(["report", str(a), str(fast), "--out", str(out), "--recipe", str(RECIPE)]) == 1
    printed = capsys.readouterr().out
    assert "PASS  parameters: torch accounted vs instantiated (a): accounted trainable 11,264, " \
           "instantiated trainable 11,264, accounted total 249,408, instantiated total 249,408" in printed
    # 25x the learning rate: step 1 (before any update) agrees exactly; over 4 steps of random tokens the mean
    # loss moves < 1 %, but the gradient norms give it away
    assert "PASS  loss, first step: fast vs a: step 1" in printed and "rel error 0 %" in printed
    assert "FAIL  global norm, mean over steps: fast vs a" in printed
    assert f"report: {out / 'report.html'}" in printed
    md = (out / "report.md").read_text()
    assert "| torch | 238,144 | 11,264 | 11,264 |" in md
    with pytest.raises(TunebridgeError, match="already exists"):
        cli(["report", str(a), "--out", str(out)])
    assert cli(["report", str(a), "--out", str(out), "--force", "--names", "only"]) == 0
    assert "| only | torch | 4 (1-4) |" in (out / "report.md").read_text()
    shutil.rmtree(tmp_path / "base")
