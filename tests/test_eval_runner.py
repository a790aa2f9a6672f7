"""``tunebridge eval run``: SQuAD and math end to end on tiny HF models, PEFT adapters, and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunebridge.cli import main
from tunebridge.data.squad import write_squad_eval
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation.hf_scorer import HFScorer
from tunebridge.evaluation.runner import read_jsonl, run_eval
from tunebridge.evaluation.tokens import load_eval_tokenizer

from .test_eval_multiple_choice import FIXTURES, letter_id, preferring_model, random_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tokenizer():
    return load_eval_tokenizer(None)


@pytest.fixture(scope="module")
def squad_jsonl(tmp_path_factory, tokenizer) -> Path:
    out = tmp_path_factory.mktemp("squad") / "set"
    write_squad_eval(REPO / "data" / "samples" / "squad_dev_sample.json", out, tokenizer, 512, mindrecord=False)
    return out / "squad_eval.jsonl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny") / "model"
    random_model(0).save_pretrained(d)
    return d


def test_cli_squad_end_to_end(model_dir, squad_jsonl, tmp_path, capsys):
    out = tmp_path / "squad"
    argv = ["eval", "run", str(model_dir), "--task", "squad", "--data", str(squad_jsonl), "--limit", "5",
            "--batch-size", "2", "--max-new-tokens", "6", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert json.loads(capsys.readouterr().out) == m
    # the default protocol is MindFormers' eval (the rendered eval YAML's): EmF1Metric, the official figure beside
    assert (m["task"], m["protocol"], m["count"], m["scorer"], m["tokenizer"]) == ("squad", "mindformers", 5, "hf",
                                                                                   "embedded")
    assert m["metric_protocol"] == "mindformers-emf1" and set(m["squad_v11_official"]) == {"f1", "exact_match"}
    assert m["units"] == {"f1": "percent", "exact_match": "percent"}
    rows = [json.loads(r) for r in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5 and all(set(r) == {"id", "prediction", "answers"} for r in rows)
    assert main(argv) == 2  # an existing output is refused without --force
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


def test_empty_predictions_are_counted_and_scored_zero(tokenizer, squad_jsonl, tmp_path):
    # a model whose first choice is eos: every prediction is empty
    scorer = HFScorer(preferring_model({tokenizer.eos_token_id: 5.0}), tokenizer, torch.device("cpu"))
    m = run_eval(scorer, "squad", squad_jsonl, tmp_path / "o", limit=4, progress=False)
    assert (m["count"], m["empty_predictions"], m["f1"], m["exact_match"]) == (4, 4, 0.0, 0.0)


def test_math_with_a_model_that_always_answers_7(tokenizer, tmp_path):
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps({"problem": f"计算 {p}", "solution": s}, ensure_ascii=False) + "\n"
                            for p, s in [("3 + 4", "7"), ("14 / 2", "7.0"), ("2 * 4", "8")]), encoding="utf-8")
    scorer = HFScorer(preferring_model({letter_id(tokenizer, "7"): 5.0}), tokenizer, torch.device("cpu"))
    m = run_eval(scorer, "math", data, tmp_path / "o", max_new_tokens=1, progress=False)
    # "7" equals 7 and 7.0 numerically; the contains rule only matches gold "7"
    assert (m["count"], m["numeric_accuracy"], m["contains_accuracy"]) == (3, 2 / 3, 1 / 3)
    assert m["units"] == {"numeric_accuracy": "fraction", "contains_accuracy": "fraction"}
    rows = [json.loads(r) for r in (tmp_path / "o" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["prediction"] for r in rows] == ["7", "7", "7"]


def test_seed_math_sample_runs(model_dir, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["eval", "run", str(model_dir), "--task", "math", "--data", str(REPO / "data/samples/seed004_math.jsonl"),
                 "--limit", "3", "--max-new-tokens", "4", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["count"] == 3 and "numeric_rule" in m and m["max_new_tokens"] == 4


def test_peft_adapter_is_applied(model_dir, tokenizer, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    torch.manual_seed(3)
    peft = get_peft_model(random_model(0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "adapter")
    merged = PeftModel.from_pretrained(random_model(0), tmp_path / "adapter").merge_and_unload()
    ctx, cont = ["问：1+1=?\n答："] * 2, ["A", "B"]
    base = HFScorer.from_dir(model_dir, tokenizer=tokenizer).loglikelihood(ctx, cont)
    tuned = HFScorer.from_dir(model_dir, tmp_path / "adapter", tokenizer=tokenizer).loglikelihood(ctx, cont)
    want = HFScorer(merged.eval(), tokenizer, torch.device("cpu")).loglikelihood(ctx, cont)
    assert tuned == pytest.approx(want, abs=1e-4)
    assert abs(tuned[0] - base[0]) > 1e-3


def test_multiple_choice_through_the_cli(model_dir, tmp_path):
    out = tmp_path / "mc"
    assert main(["eval", "run", str(model_dir), "--task", "cmmlu", "--data", str(FIXTURES / "cmmlu"),
                 "--protocol", "loglik", "--limit", "1", "--shots", "2", "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (m["protocol"], m["count"], m["shots"], m["max_new_tokens"]) == ("loglik", 5, 2, None)
    assert len(m["subjects"]) == 5


def test_bad_input(model_dir, squad_jsonl, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"problem": "1+1", "solution": "2"}\n{"problem": "\xff", "solution": "3"}\n')
    with pytest.raises(TunebridgeError, match=r"bad\.jsonl:2: not UTF-8 \(byte 0xff"):
        read_jsonl(bad, ("problem", "solution"))
    bad.write_text('{"problem": "1+1", "solution": "2"}\n{"problem": "2+2"}\n', encoding="utf-8")
    with pytest.raises(TunebridgeError, match=r"bad\.jsonl:2: missing field 'solution'"):
        read_jsonl(bad, ("problem", "solution"))
    bad.write_text("\n", encoding="utf-8")
    with pytest.raises(TunebridgeError, match="no records"):
        read_jsonl(bad, ("problem",))
    assert main(["eval", "run", str(model_dir), "--task", "squad", "--data", str(squad_jsonl), "--protocol",
                 "loglik", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "--protocol loglik is not a protocol of squad" in capsys.readouterr().err
    assert main(["eval", "run", str(tmp_path), "--task", "squad", "--data", str(squad_jsonl),
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "not an HF model directory" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # prediction files made elsewhere: a count mismatch is an error, not a score
    preds = tmp_path / "p.jsonl"
    preds.write_text('"a"\n"b"\n', encoding="utf-8")
    assert main(["eval", "score", "--task", "squad", "--predictions", str(preds), "--references",
                 str(squad_jsonl)]) == 2
    assert "has 2 predictions" in capsys.readouterr().err


def test_eval_run_takes_a_recipe(tmp_path, capsys):
    """RECIPE instead of MODEL: its weights, and for math its prompt template (the tuned model's format)."""
    from tunebridge.cli import main
    out = tmp_path / "m"
    assert main(["eval", "run", "recipes/tiny-demo-lora.yaml", "--task", "math", "--data",
                 "data/samples/demo_math_test.jsonl", "--limit", "4", "--max-new-tokens", "4", "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["template"] == "qwen" and metrics["count"] == 4
    assert metrics["model"].endswith("tunebridge/assets/tiny-base")
    assert main(["eval", "run", "recipes/tiny-demo-lora.yaml", "--scorer", "mcore", "--task", "math", "--data",
                 "data/samples/demo_math_test.jsonl", "--out", str(tmp_path / "x")]) == 2
    assert "convert them for --scorer mcore" in capsys.readouterr().err


def test_predictions_are_written_before_scoring(tokenizer, tmp_path):
    """A gold the rule cannot read fails the scoring, not the run: the generated predictions are on disk."""
    data = tmp_path / "math.jsonl"
    data.write_text('{"problem": "1+6", "solution": "7"}\n{"problem": "?", "solution": "none"}\n', encoding="utf-8")
    scorer = HFScorer(preferring_model({letter_id(tokenizer, "7"): 5.0}), tokenizer, torch.device("cpu"))
    with pytest.raises(TunebridgeError, match=r"question 2: gold answer 'none' holds no number .*predictions are kept"):
        run_eval(scorer, "math", data, tmp_path / "o", max_new_tokens=1, progress=False)
    rows = [json.loads(r) for r in (tmp_path / "o" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["prediction"] for r in rows] == ["7", "7"] and not (tmp_path / "o" / "metrics.json").exists()
    # the kept predictions score once the gold is fixed
    data.write_text('{"problem": "1+6", "solution": "7"}\n{"problem": "?", "solution": "8"}\n', encoding="utf-8")
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "o" / "predictions.jsonl"),
                 "--references", str(data)]) == 0


def test_mindformers_protocol_reads_what_the_mindrecord_holds(tokenizer, squad_jsonl, tmp_path):
    """MindFormers' eval feeds the MindRecord's input_ids (bos + prompt) and scores against its decoded labels."""
    import numpy as np

    from tunebridge.data.squad import eval_rows
    from tunebridge.evaluation import protocol_mindformers_squad as mf
    items = [json.loads(line) for line in squad_jsonl.read_text(encoding="utf-8").splitlines()][:4]
    ids, labels = eval_rows(items, tokenizer, 512)
    pad = tokenizer.pad_token_id
    for item, row, label in zip(items, ids, labels):
        want = mf.prompt_ids(tokenizer, item["prompt"])
        assert row[:len(want)].tolist() == want and (row[len(want):] == pad).all()
        assert mf.gold_as_stored(tokenizer, item["answers"][0]) == tokenizer.decode(
            label[label != pad].tolist(), skip_special_tokens=True)
    scorer = HFScorer(preferring_model({tokenizer.eos_token_id: 5.0}), tokenizer, torch.device("cpu"))
    m = run_eval(scorer, "squad", squad_jsonl, tmp_path / "o", limit=4, progress=False)
    assert (m["protocol"], m["metric_protocol"], m["max_new_tokens"]) == ("mindformers", "mindformers-emf1",
                                                                          mf.MAX_NEW_TOKENS)
    assert np.isclose(m["f1"], 0.0) and m["empty_predictions"] == 4
