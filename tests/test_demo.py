"""The README's first command: the demo runs end to end and every parity verdict in its report passes."""
from __future__ import annotations

import json
from pathlib import Path

from tunebridge.workflows.demo import run_demo


def test_demo_end_to_end(tmp_path, ms_python, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative output directory, as scripts/demo.sh passes it
    report, all_passed = run_demo(Path("demo"), progress=False)
    printed = capsys.readouterr().out
    assert all_passed, printed
    md = (report / "report.md").read_text(encoding="utf-8")
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "FAIL" not in md.split("## Parity verdicts", 1)[1].split("## Versions", 1)[0]
    assert html.count("data:image/png;base64,") >= 1
    # the base-vs-tuned rows: LoRA on the instruction math set moves math accuracy, SQuAD stays above the gate
    base = json.loads((tmp_path / "demo" / "eval" / "base" / "math" / "metrics.json").read_text())
    tuned = json.loads((tmp_path / "demo" / "eval" / "tuned on torch" / "math" / "metrics.json").read_text())
    assert base["numeric_accuracy"] == 0.0 < tuned["numeric_accuracy"]
    assert "| base |" in md and "| tuned on mindformers |" in md and "| tuned on mindspeed-llm |" in md
    assert f"report: {report / 'report.html'}" in printed
