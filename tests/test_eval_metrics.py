"""Evaluation metrics: SQuAD against torchmetrics, math extraction and comparison, the seeds' gate and score."""
from __future__ import annotations

import random
from decimal import Decimal

import pytest
from torchmetrics.functional.text.squad import _compute_exact_match_score, _compute_f1_score
from torchmetrics.text import SQuAD

from tunebridge.bridge import call_mindspore
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation import squad
from tunebridge.evaluation.math import accuracy, contains_answer, extract_number, numbers_equal
from tunebridge.evaluation.scores import contest, retention_gate

WORDS = ["the", "a", "an", "Paris", "paris", "river", "1998", "Yellow", "café", "naïve", "Ünïcode", "it's", "co-op",
         "U.S.", "!", ",", "3.5", "", "theatre", "An", "THE", "—", "«x»", "北京", "nine", "  ", "\t"]


def generated_cases(n: int = 600):
    rng = random.Random(0)
    preds, golds = [], []
    for _ in range(n):
        preds.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6))) + rng.choice(["", ".", "  ", "!?"]))
        golds.append([" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 3))])
    return preds, golds


def test_squad_equals_torchmetrics_on_generated_cases():
    preds, golds = generated_cases()
    ours = squad.score(preds, golds, empty_match=True)
    # per case and per gold answer; torchmetrics does the F1 arithmetic in float32, so that is the precision
    for p, gs in zip(preds, golds):
        for g in gs:
            assert squad.f1(p, g, empty_match=True) == pytest.approx(_compute_f1_score(p, g).item(), abs=2e-7)
            assert squad.exact(p, g) == _compute_exact_match_score(p, g).item()
    tm = SQuAD()([{"prediction_text": p, "id": str(i)} for i, p in enumerate(preds)],
                 [{"answers": {"answer_start": [0] * len(g), "text": g}, "id": str(i)} for i, g in enumerate(golds)])
    assert ours["exact_match"] == pytest.approx(tm["exact_match"].item(), abs=1e-4)  # torchmetrics sums in float32
    assert ours["f1"] == pytest.approx(tm["f1"].item(), abs=1e-4)
    assert ours["protocol"] == squad.PROTOCOL_EMPTY_MATCH and ours["count"] == 600


def test_official_v11_differs_only_where_both_sides_normalize_to_nothing():
    preds, golds = generated_cases()
    for p, gs in zip(preds, golds):
        for g in gs:
            if squad.normalize(p) and squad.normalize(g):
                assert squad.f1(p, g) == squad.f1(p, g, empty_match=True)
    assert squad.f1("the", "a") == 0.0 and squad.f1("the", "a", empty_match=True) == 1.0
    assert squad.score(["The Yellow River!"], [["yellow river", "a river"]]) == {
        "exact_match": 100.0, "f1": 100.0, "count": 1, "protocol": "squad-v1.1-official"}
    assert squad.score(["Yellow"], [["the Yellow River"]])["f1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)


def test_squad_bad_input():
    with pytest.raises(TunebridgeError, match="2 predictions for 1 questions"):
        squad.score(["a", "b"], [["a"]])
    with pytest.raises(TunebridgeError, match="no predictions"):
        squad.score([], [])


MATH_CASES = [
    # (prediction, gold, numeric equal, contains) -- the seed's examples first
    ("-6925.76", "-6925.76", True, True),
    ("答案是 -6925.76", "-6925.76", True, True),
    ("计算结果为 -7825393.7784", "-7825393.7784", True, True),
    ("-7825393.78", "-7825393.7784", False, False),    # less precise than the gold: not equal
    ("-7825393.7784", "-7825393.78", True, False),     # rounds to the gold's two decimals
    ("-0.8961641", "-0.8961641", True, True),
    ("-0.90", "-0.8961641", False, False),
    ("-0.8961641", "-0.90", True, False),
    ("3412.88", "3412.88", True, True),
    ("The answer is 3412.88.", "3412.88", True, True),
    ("3412.880", "3412.88", True, True),               # the lenient rule is a substring test
    ("3412.9", "3412.88", False, False),
    ("3,412.88", "3412.88", True, False),
    ("1,234,567", "1234567", True, False),
    ("1234567", "1,234,567", True, False),
    ("12", "12", True, True),
    ("12.0", "12", True, True),
    ("12.4", "12", True, True),
    ("12.5", "12", False, True),                        # half-up: 13
    ("-12.5", "-13", True, False),                      # half away from zero
    ("answer: -3", "-3", True, True),
    ("answer: 3", "-3", False, False),
    ("−3", "-3", True, False),                          # U+2212 minus
    ("－３", "-3", True, False),                        # full-width
    ("３．５", "3.5", True, False),
    ("１，２３４", "1234", True, False),
    ("3/4", "0.75", True, False),
    ("The ratio is 3 / 4", "0.75", True, False),
    ("1/3", "0.33", True, False),
    ("2/3", "0.67", True, False),
    ("-1/2", "-0.5", True, False),
    ("5/0 is undefined, so 0", "0", True, True),
    ("12.5%", "0.125", True, False),
    ("12.5%", "12.5", True, True),
    ("50%", "0.5", True, False),
    ("1.2e-3", "0.0012", True, False),
    ("1.2E3", "1200", True, False),
    ("6.02e23", "6.02e23", True, True),
    ("2.5e-1", "0.25", True, False),
    ("first 3 then 7", "7", True, True),
    ("first 3 then 7", "3", False, True),
    ("计算 1 + 2 等于 3", "3", True, True),
    ("1 + 2 = 3, done", "3", True, True),
    ("x = 4, y = 5", "5", True, True),
    ("答案为 42", "42", True, True),
    ("答案：42。", "42", True, True),
    ("The answer is 42, not 41.", "42", True, True),
    ("I think 41 but the answer is 42", "42", True, True),
    ("no number here", "42", False, False),
    ("", "42", False, False),
    ("v2 has 10 items", "10", True, True),
    ("0.1 + 0.2 = 0.3", "0.3", True, True),
    ("0.30000000000000004", "0.3", True, True),
    ("-0", "0", True, True),
    ("0.001", "0", True, True),
    ("100", "1e2", True, False),
    ("7.00", "7", True, True),
    ("-7825393.7784", "-7825393.7784", True, True),
    ("约等于 -0.896", "-0.8961641", False, False),
    ("约等于 -0.896", "-0.896", True, True),
    ("3412.875", "3412.88", True, False),
    ("3412.874", "3412.88", False, False),
    ("9999999999999.99", "9999999999999.99", True, True),
]


@pytest.mark.parametrize("prediction,gold,equal,contains", MATH_CASES)
def test_math_cases(prediction, gold, equal, contains):
    assert numbers_equal(prediction, gold) is equal
    assert contains_answer(prediction, gold) is contains


def test_math_table_is_large_enough_and_tolerance_option():
    assert len(MATH_CASES) >= 60
    assert numbers_equal("3412.9", "3412.88", rel_tol=1e-4)
    assert not numbers_equal("3413.9", "3412.88", rel_tol=1e-4)
    assert extract_number("答案是 -6925.76") == (Decimal("-6925.76"), False)


def test_accuracy_reports_both_labelled_figures():
    preds = ["答案是 -6925.76", "-7825393.78", "The result: 3412.88", "maybe -0.9"]
    golds = ["-6925.76", "-7825393.7784", "3412.88", "-0.8961641"]
    r = accuracy(preds, golds)
    assert r["numeric_accuracy"] == 0.5 and r["contains_accuracy"] == 0.5 and r["count"] == 4
    assert "decimals" in r["numeric_rule"] and "seed 004" in r["contains_rule"]
    with pytest.raises(TunebridgeError, match="holds no number"):
        numbers_equal("1", "none")


def test_retention_gate_and_contest_score():
    # seed 002's figures: base F1/EM from the contest baseline need 90 %
    gate = retention_gate(f1=61.87, em=47.27, base_f1=65.42, base_em=49.69)
    assert gate["passed"] and gate["f1"]["needs"] == pytest.approx(58.878)
    assert not retention_gate(f1=58.0, em=47.27, base_f1=65.42, base_em=49.69)["passed"]
    c = contest(3_407_872 / 8_030_261_248, 0.619)
    assert c["score"] == pytest.approx((1 - 3_407_872 / 8_030_261_248) * 0.3 + 0.619 * 0.7)


# --- scoring files made elsewhere ------------------------------------------------------------------------


def _math_refs(tmp_path):
    import json
    refs = tmp_path / "test_128.jsonl"
    refs.write_text("".join(json.dumps({"problem": f"q{i}", "solution": s}, ensure_ascii=False) + "\n"
                            for i, s in enumerate(["-6925.76", "-7825393.7784", "3412.88", "-0.8961641"])))
    return refs


def test_scores_the_seeds_npy_predictions(tmp_path, capsys):
    import json

    import numpy as np

    from tunebridge.cli import main
    np.save(tmp_path / "result.npy", np.array(["答案是 -6925.76", "-7825393.78", "3412.88", ""], dtype=object))
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "result.npy"), "--references",
                 str(_math_refs(tmp_path)), "--low-param-ratio", "0.000424", "--out", str(tmp_path / "m")]) == 0
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert m["numeric_accuracy"] == 0.5 and m["empty_predictions"] == 1 and m["count"] == 4
    assert m["contest"]["score"] == pytest.approx((1 - 0.000424) * 0.3 + 0.5 * 0.7)


def test_refuses_a_crafted_npy_and_mismatched_counts(tmp_path, capsys):
    import os
    import pickle

    import numpy as np

    from tunebridge.cli import main

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/tunebridge-npy-pwned",))
    with open(tmp_path / "evil.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        pickle.dump(Evil(), f)
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "evil.npy"), "--references",
                 str(_math_refs(tmp_path))]) == 2
    assert "refused to unpickle" in capsys.readouterr().err
    assert not os.path.exists("/tmp/tunebridge-npy-pwned")
    (tmp_path / "p.jsonl").write_text('"1"\n"2"\n')
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "p.jsonl"), "--references",
                 str(_math_refs(tmp_path))]) == 2
    assert "has 2 predictions" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_bytes(b'"\xff"\n')
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "bad.jsonl"), "--references",
                 str(_math_refs(tmp_path))]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_squad_scoring_with_the_retention_gate(tmp_path, capsys):
    import json

    from tunebridge.cli import main
    (tmp_path / "refs.jsonl").write_text('{"answers": ["2018", "in 2018"]}\n{"answers": ["the Yellow River"]}\n')
    (tmp_path / "preds.jsonl").write_text('{"prediction": "In 2018."}\n{"prediction": "Pearl River"}\n')
    args = ["eval", "score", "--task", "squad", "--predictions", str(tmp_path / "preds.jsonl"), "--references",
            str(tmp_path / "refs.jsonl"), "--baseline-f1", "80", "--baseline-em", "50"]
    assert main(args) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["exact_match"] == 50.0 and m["f1"] == 75.0 and m["retention_gate"]["passed"]
    assert m["protocol"] == "squad-v1.1-official"
    assert main(args[:-4] + ["--baseline-f1", "90", "--baseline-em", "50"]) == 1  # gate fails: exit 1
    capsys.readouterr()
    assert main(args + ["--mindformers"]) == 1  # MindFormers' semantics score these lower: the gate fails
    m = json.loads(capsys.readouterr().out)
    assert m["protocol"] == "mindformers-emf1" and m["exact_match"] == 0.0  # no article/"." removal, first gold only
    assert m["f1"] < 72 and not m["retention_gate"]["passed"]


# --- MindFormers' EmF1Metric semantics -----------------------------------------------------------------


def test_mindformers_emf1_documented_example():
    from tunebridge.evaluation import mindformers_emf1 as mf
    r = mf.score(["I love Beijing, because it's beautiful", "Hello world。"], ["I love Beijing.", "Hello world"])
    assert (r["F1"], r["Em"], r["protocol"]) == (75.0, 50.0, "mindformers-emf1")


def test_mindformers_emf1_equals_the_real_metric(ms_python):
    from tunebridge.evaluation import mindformers_emf1 as mf
    rng = random.Random(1)
    pieces = ["郑州市", "郑州", "。", "河南", "的省会", "是", "Beijing", "beijing", "I love", " ", ",", ".", "the",
              "Yellow River", "黄河", "2018", "年", "——", "……", "《书》", "-", "a/b", "\n第二行", "  ", "！", "?"]
    preds = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(320)]
    golds = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 4))) for _ in range(320)]
    golds = [g if g.strip() else "郑州" for g in golds]
    ref = call_mindspore("ms.emf1_ref", "per_case", predictions=preds, golds=golds)
    for p, g, r in zip(preds, golds, ref):
        assert mf.f1(p, g) * 100 == pytest.approx(r["F1"], abs=1e-9), (p, g)
        assert mf.exact(p, g) * 100 == r["Em"], (p, g)
    total = call_mindspore("ms.emf1_ref", "overall", predictions=preds, golds=golds)
    ours = mf.score(preds, golds)
    assert ours["F1"] == pytest.approx(total["F1"], abs=1e-9) and ours["Em"] == pytest.approx(total["Em"], abs=1e-9)
