"""Evaluation metrics: SQuAD against torchmetrics, math extraction and comparison, the seeds' gate and score."""
from __future__ import annotations

import random
import re
import json
from fractions import Fraction
from pathlib import Path

import pytest
from torchmetrics.functional.text.squad import _compute_exact_match_score, _compute_f1_score
from torchmetrics.text import SQuAD

from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation import math as math_rule
from tunebridge.evaluation import squad
from tunebridge.evaluation.math import accuracy, contains_answer, numbers_equal, read_answer
from tunebridge.evaluation.scores import contest, retention_gate

from .snapshot import assert_snapshot

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


MATH_TABLE = Path(__file__).parent / "fixtures" / "math_verdicts.jsonl"


def _math_table() -> list[dict]:
    return [json.loads(line) for line in MATH_TABLE.read_text(encoding="utf-8").splitlines()]


def test_math_rule_agrees_with_a_persons_verdict_on_every_case():
    rows = _math_table()
    assert len(rows) >= 150
    disagree = [r for r in rows if numbers_equal(r["prediction"], r["gold"]) is not r["verdict"]]
    assert disagree == []
    # seed 004's "contains" rule, reported beside it, agrees with the person far less often
    contains = sum(contains_answer(r["prediction"], r["gold"]) is r["verdict"] for r in rows)
    assert contains == 95 and len(rows) == 198


def test_math_tolerance_option_and_reading():
    assert numbers_equal("3412.9", "3412.88", rel_tol=1e-4)
    assert not numbers_equal("3413.9", "3412.88", rel_tol=1e-4)
    assert read_answer("答案是 -6925.76").value == Fraction(-692576, 100)
    assert read_answer("no digits") is None and read_answer("1e99999999") is None


def test_accuracy_reports_both_labelled_figures():
    preds = ["答案是 -6925.76", "-7825393.78", "The result: 3412.88", "maybe -0.9"]
    golds = ["-6925.76", "-7825393.7784", "3412.88", "-0.8961641"]
    r = accuracy(preds, golds)
    assert r["numeric_accuracy"] == 0.5 and r["contains_accuracy"] == 0.5 and r["count"] == 4
    assert "by value" in r["numeric_rule"] and "seed 004" in r["contains_rule"]
    with pytest.raises(TunebridgeError, match="question 2: gold answer 'none' holds no number"):
        accuracy(["1", "2"], ["1", "none"])
    # no crash on a 40-digit prediction, a gold written ".5", a huge exponent
    assert accuracy(["1" * 40, "0.5", "1e999999999"], ["1" * 40, ".5", "3"])["numeric_accuracy"] == 2 / 3


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
    # multi-line predictions whose later lines would match, and repeated segments on both sides
    fixed = [("黄河\n郑州", "郑州"), ("\n\n郑州 is big\nmore", "郑州"), ("郑郑", "郑"), ("郑州郑州", "郑州郑州河南"),
             ("the the Beijing\nBeijing", "Beijing the the")]
    preds, golds = preds + [p for p, _ in fixed], golds + [g for _, g in fixed]
    ref = call_mindspore("backends.mindformers.ms.emf1_ref", "per_case", predictions=preds, golds=golds)
    for p, g, r in zip(preds, golds, ref):
        assert mf.f1(p, g) * 100 == pytest.approx(r["F1"], abs=1e-9), (p, g)
        assert mf.exact(p, g) * 100 == r["Em"], (p, g)
    total = call_mindspore("backends.mindformers.ms.emf1_ref", "overall", predictions=preds, golds=golds)
    ours = mf.score(preds, golds)
    assert ours["F1"] == pytest.approx(total["F1"], abs=1e-9) and ours["Em"] == pytest.approx(total["Em"], abs=1e-9)


# --- pairing predictions with references ------------------------------------------------------------------


def _squad_refs(tmp_path) -> Path:
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"id": "q1", "answers": ["Denver Broncos"]}\n{"id": "q2", "answers": ["Carolina Panthers"]}\n',
                    encoding="utf-8")
    return refs


def _score(tmp_path, capsys, preds: Path, refs: Path, *extra: str) -> tuple[int, dict | str]:
    from tunebridge.cli import main
    code = main(["eval", "score", "--task", "squad", "--predictions", str(preds), "--references", str(refs), *extra])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else out.err)


def test_squad_predictions_are_paired_by_id(tmp_path, capsys):
    refs = _squad_refs(tmp_path)
    swapped = tmp_path / "p.jsonl"  # the two lines swapped: by line order this would score EM 0
    swapped.write_text('{"id": "q2", "prediction": "Carolina Panthers"}\n{"id": "q1", "prediction": "Denver Broncos"}\n')
    code, m = _score(tmp_path, capsys, swapped, refs)
    assert code == 0 and (m["exact_match"], m["paired_by"]) == (100.0, "id")
    official = tmp_path / "predictions.json"  # the official {id: text} file
    official.write_text(json.dumps({"q2": "Carolina Panthers", "q1": "the Denver Broncos"}))
    code, m = _score(tmp_path, capsys, official, refs)
    assert code == 0 and (m["exact_match"], m["f1"], m["count"]) == (100.0, 100.0, 2)
    official.write_text(json.dumps({"q1": "Denver Broncos"}))
    assert _score(tmp_path, capsys, official, refs) == (2, f"tunebridge: error: {official}: no prediction for id "
                                                            f"'q2', which {refs} has\n")
    official.write_text(json.dumps({"q1": "a", "q2": "b", "q9": "c"}))
    code, err = _score(tmp_path, capsys, official, refs)
    assert code == 2 and "id 'q9' is not in" in err
    official.write_text(json.dumps({"q1": "a", "q2": 7}))
    code, err = _score(tmp_path, capsys, official, refs)
    assert code == 2 and "the prediction for id 'q2' is 7, not a string" in err
    swapped.write_text('{"id": "q2", "prediction": "a"}\n{"id": "q2", "prediction": "b"}\n')
    code, err = _score(tmp_path, capsys, swapped, refs)
    assert code == 2 and "p.jsonl:2: id 'q2' repeats" in err
    swapped.write_text('{"id": "q2", "prediction": "a"}\n{"prediction": "b"}\n')
    code, err = _score(tmp_path, capsys, swapped, refs)
    assert code == 2 and "p.jsonl:2: no 'id', while other records have one" in err
    # predictions without ids pair by position (the seeds' .npy); ids only on the predictions cannot pair
    (tmp_path / "plain.jsonl").write_text('"Denver Broncos"\n"Carolina Panthers"\n')
    code, m = _score(tmp_path, capsys, tmp_path / "plain.jsonl", refs)
    assert code == 0 and (m["exact_match"], m["paired_by"]) == (100.0, "position")
    (tmp_path / "noid.jsonl").write_text('{"answers": ["a"]}\n{"answers": ["b"]}\n')
    official.write_text(json.dumps({"q1": "a", "q2": "b"}))
    code, err = _score(tmp_path, capsys, official, tmp_path / "noid.jsonl")
    assert code == 2 and "has no ids to pair them with" in err


def test_malformed_squad_gold_is_refused(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text('"D"\n')
    refs = tmp_path / "refs.jsonl"
    for gold, message in [('"Denver Broncos"', "refs.jsonl:1: 'answers' is the string 'Denver Broncos'; expected a "
                                                "list"),
                          ("[5]", "refs.jsonl:1: answers[0] is 5, not a string"),
                          ("[]", "refs.jsonl:1: 'answers' must be a non-empty list of strings, got []"),
                          ('{"texts": ["x"]}', "'answers' must be a non-empty list")]:
        refs.write_text('{"answers": %s}\n' % gold)
        code, err = _score(tmp_path, capsys, preds, refs)
        assert code == 2 and message in err and "Traceback" not in err, gold
    # the official and HF shapes of the same answers are read
    for gold in ('[{"text": "D", "answer_start": 0}]', '{"text": ["D"], "answer_start": [0]}'):
        refs.write_text('{"answers": %s}\n' % gold)
        code, m = _score(tmp_path, capsys, preds, refs)
        assert code == 0 and m["exact_match"] == 100.0


def test_math_gold_as_a_json_number(tmp_path, capsys):
    from tunebridge.cli import main
    (tmp_path / "refs.jsonl").write_text('{"solution": 0.5}\n{"solution": 12}\n{"solution": true}\n')
    (tmp_path / "p.jsonl").write_text('"\\\\frac{1}{2}"\n"12.0"\n"1"\n')
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "p.jsonl"), "--references",
                 str(tmp_path / "refs.jsonl")]) == 2
    assert "refs.jsonl:3: the gold answer is true, expected a string or a number" in capsys.readouterr().err
    (tmp_path / "refs.jsonl").write_text('{"solution": 0.5}\n{"solution": 12}\n')
    (tmp_path / "p.jsonl").write_text('"\\\\frac{1}{2}"\n"12.0"\n')
    assert main(["eval", "score", "--task", "math", "--predictions", str(tmp_path / "p.jsonl"), "--references",
                 str(tmp_path / "refs.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["numeric_accuracy"] == 1.0


def test_squad_f1_counts_repeated_tokens():
    """The official F1 counts shared tokens with multiplicity (a multiset), not as a set."""
    # pred "cat cat cat" vs gold "cat cat": 2 shared, precision 2/3, recall 1 -> F1 0.8 (a set would say 0.4)
    assert squad.f1("the cat cat cat", "cat cat") == pytest.approx(0.8)
    assert squad.f1("cat cat", "a cat cat cat") == pytest.approx(0.8)
    # "paris paris river" vs "paris river river": 2 shared of 3 each -> 2/3
    assert squad.f1("Paris paris river", "paris river River.") == pytest.approx(2 / 3)
    rng = random.Random(2)
    words = ["paris", "the", "river", "1998", "Paris"]
    cases = [(" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))),
              " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))) for _ in range(300)]
    both = [(p, g) for p, g in cases
            if any(squad.normalize(p).split().count(w) > 1 and squad.normalize(g).split().count(w) > 1
                   for w in set(squad.normalize(p).split()))]
    assert len(both) > 50  # many cases repeat a token on both sides
    for p, g in cases:
        assert squad.f1(p, g, empty_match=True) == pytest.approx(_compute_f1_score(p, g).item(), abs=2e-7), (p, g)


def test_mindformers_emf1_reads_the_first_line_only():
    from tunebridge.evaluation import mindformers_emf1 as mf
    # the second line would share "郑州" with the gold: the first line alone shares nothing
    assert mf.f1("黄河\n郑州", "郑州") == 0.0 and mf.exact("郑州\n黄河", "郑州") == 1.0
    # leading blank lines go first (the prediction is stripped), then the first line is kept
    assert mf.f1("\n\n郑州 is big\nmore", "郑州") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    # repeated segments: the longest common contiguous run, not a count: "郑州郑州" vs "郑州" -> 1 of 2 in the prediction
    assert mf.f1("郑郑", "郑") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert mf.score(["Beijing\nnope", "a\nb"], ["beijing", "b"]) == {"F1": 50.0, "Em": 50.0, "count": 2,
                                                                     "protocol": "mindformers-emf1"}


def _held(n) -> dict | None:
    return None if n is None else {"value": str(n.value), "percent": n.percent, "kind": n.kind, "unit": str(n.unit),
                                   "significant": n.significant}


# (text, the number a person reads as its answer), spelled out; every field of each reading is held below
ANSWERS = [
    ("\\text{5} apples", "5"), ("\\mathrm{12}", "12"), ("\\mathbf{3}", "3"), ("\\textbf{7}", "7"),
    ("about 1\\,000", "1000"), ("50\\%", "50"), ("2\\times 10^3", "2000"), ("3\\cdot10^{2}", "300"),
    ("$12$", "12"), ("\\left( 5 \\right)", "5"), ("\\!\\!4", "4"), ("x = \\frac{1}{2}", "1/2"),
    ("\\dfrac34", "3/4"), ("2 1/2 cups", "5/2"), ("12.50%", "12.50"), ("1.2e-3", "0.0012"), ("10³", "1000"),
    ("−7", "-7"), ("- 5", "-5"), ("10 - 5", "5"), ("１２", "12"), ("1,234,567", "1234567"), ("1 234", "1234"),
    ("零点五", "1/2"), ("三点一四", "157/50"), ("一百点五", "201/2"), ("三分之一", "1/3"), ("百分之五十", "50"),
    ("负三", "-3"), ("零分之一 或 二", "2"), ("一万二千", "12000"), ("两亿", "200000000"),
    ("\\boxed{\\frac{1}{2}} then 7", "1/2"), ("\\boxed{12", "12"), ("\\boxed{x = 5}", "5"),
    ("\\boxed{x}. The answer is 5", "5"), ("\\boxed{{1}2} ok", "1"), ("答案是 x。3 + 4 = 7 and 9", "7"),
    ("3 + 4 = 7 then 9 apples", "7"), ("so 4 and 5", "5"), ("答：8", "8"), ("Therefore, 6. Check 6 = 6", "6"),
    ("1e9999999", None), ("no digits", None),
]


def test_answers_are_read_as_a_person_reads_them():
    for text, want in ANSWERS:
        got = read_answer(text)
        assert (None if got is None else got.value) == (None if want is None else Fraction(want)), text
    assert_snapshot("math_readings", {text: _held(read_answer(text)) for text, _ in ANSWERS})


def test_number_comparison_rules():
    from tunebridge.evaluation.math import Number, equal
    assert not equal(Number(Fraction(1)), Number(Fraction(2)))  # no tolerance unless asked
    assert numbers_equal("110", "100", rel_tol=0.1) and not numbers_equal("110.5", "100", rel_tol=0.1)
    assert numbers_equal("0.33", "三分之一") and not numbers_equal("0.3", "三分之一")
    assert numbers_equal("0.54", "零点五") and not numbers_equal("0.56", "零点五")
    assert numbers_equal("50", "50%") and numbers_equal("0.5", "50%") and numbers_equal("50%", "0.5")
    assert not numbers_equal("13%", "12.5%")
    assert contains_answer(None, "XX") is False and contains_answer("= 12 =", " 12 ")
    r = accuracy(["3412.9"], ["3412.88"], rel_tol=1e-4)
    assert r["numeric_accuracy"] == 1.0 and r["numeric_rule"].endswith("; or within rel. tol. 0.0001")
    assert accuracy(["3412.9"], ["3412.88"])["numeric_rule"] == math_rule.RULE
    for args, message in [((["1"], ["1", "2"]), "1 predictions for 2 questions"), (([], []), "no predictions to score")]:
        with pytest.raises(TunebridgeError, match=f"^{message}$"):
            accuracy(*args)


def test_squad_errors_are_named():
    for args, message in [(([], []), "no predictions to score"), ((["a"], [[]]), "a question has no gold answer"),
                          ((["a", "b"], [["a"]]), "2 predictions for 1 questions")]:
        with pytest.raises(TunebridgeError, match=f"^{message}$"):
            squad.score(*args)


@pytest.mark.parametrize("text,value", [
    ("\\boxed{10\\text{,}000}", 10_000), ("1\\!000", 1000), ("$3 \\cdot 10^{5}$", 300_000),  # LaTeX spellings
    ("2 x 10^3", 2000), ("2 X 10^3", 2000),                                                  # either x
    ("十万", 100_000), ("二零二四", 2024),                            # a unit before 万; digits read as a year
    ("\\boxed{x_{1} = 5} so y = 7", 5),     # the box's braces balanced: its own '=', not the text's
    ("\\boxed{}7 and 9", 9),                # an empty box holds no answer: the text's last number
    (f"1e{math_rule.MAX_EXPONENT}", 10 ** math_rule.MAX_EXPONENT),
    (f"12e{math_rule.MAX_EXPONENT - 2}", 12 * 10 ** (math_rule.MAX_EXPONENT - 2)),
])
def test_answers_read_at_the_rule_s_edges(text, value):
    assert read_answer(text).value == value


def test_numbers_past_the_largest_exponent_are_not_read():
    top = math_rule.MAX_EXPONENT
    # past 10^MAX_EXPONENT in the exponent as written, or in the number's own magnitude
    for text in (f"1e{top + 1}", f"0.01e{top + 1}", f"123e{top - 1}"):
        assert read_answer(text) is None, text


def test_tolerances_are_inclusive():
    assert math_rule.equal(read_answer("3"), read_answer("2"), rel_tol=0.5)          # |3 - 2| = 0.5 x 2
    assert math_rule.equal(read_answer("0.5055"), read_answer("50.5%"))              # half of 0.1 % away
    assert not math_rule.equal(read_answer("0.5056"), read_answer("50.5%"))


def test_mindformers_emf1_in_lower_case_and_its_errors():
    from tunebridge.evaluation import mindformers_emf1 as emf1
    # Python's lower(), as EmF1Metric: ß stays ß (upper() would make both sides STRASSE)
    assert (emf1.exact("Straße", "strasse"), emf1.f1("Straße", "strasse")) == (0.0, 0.0)
    for args, message in [((["a"], []), "1 predictions for 0 answers"), (([], []), "no predictions to score")]:
        with pytest.raises(TunebridgeError, match="^" + re.escape(message) + "$"):
            emf1.score(*args)
