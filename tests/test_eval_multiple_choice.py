"""C-Eval / MMLU / CMMLU: layouts, MindSpeed-LLM's prompts, both protocols and the four averages, checked
with real tiny HF Llamas whose preferences are set in their weights."""
from __future__ import annotations

import re
from fractions import Fraction as F
from pathlib import Path

import pytest
import torch

from tunebridge.model.catalogue import get_model
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation import multiple_choice as mc
from tunebridge.evaluation.hf_scorer import HFScorer
from tunebridge.evaluation.runner import run_eval
from tunebridge.evaluation.tokens import load_eval_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
SPEC = get_model("tiny-llama").with_(max_position_embeddings=1024)  # 5-shot Chinese prompts are ~700 tokens


def random_model(seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**SPEC.to_hf_config())).eval()


def preferring_model(ranking: dict[int, float]):
    """A tiny Llama whose next-token logits are ``ranking[token]`` (0 for other tokens) after any input,
    times a positive factor: attention and MLP outputs are zeroed, so the last hidden state is the current
    token's embedding, whose dimension 0 is set to 1 and is the only one the final norm keeps."""
    model = random_model()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        for token, logit in ranking.items():
            model.lm_head.weight[token, 0] = logit
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return load_eval_tokenizer(None)


def letter_id(tokenizer, letter: str) -> int:
    (token,) = tokenizer.encode(letter, add_special_tokens=False)
    return token


def test_fixture_layouts_and_prompts():
    ceval = mc.load_items("ceval", FIXTURES / "ceval")
    assert len(ceval) == 15 and ceval[0].question.subject == "civil_servant"
    first = ceval[0]
    assert first.prompt.startswith("请从下列选择题中选择正确的选项。\n\n问：“画蛇添足”比喻什么？\nA. 多此一举\nB. 勤奋\nC. 聪明\nD. 节约\n答：A")
    assert first.prompt.endswith("\n\n问：“守株待兔”比喻什么？\nA. 勤劳\nB. 死守经验\nC. 机智\nD. 勇敢\n答：")
    assert first.prompt.count("\n答：") == 6 and first.letter_prefix == ""
    assert first.question.source.endswith("ceval/val/civil_servant_val.csv:2") and first.question.id == "0"
    # the val directory itself (MindSpeed-LLM's --task-data-path) reads the same
    assert [i.prompt for i in mc.load_items("ceval", FIXTURES / "ceval" / "val")] == [i.prompt for i in ceval]

    mmlu = mc.load_items("mmlu", FIXTURES / "mmlu", shots=1)
    assert mmlu[0].prompt == ("The following are multiple choice questions (with answers) about  abstract algebra.\n"
                              "The identity of (Z, +) is\nA. 0\nB. 1\nC. -1\nD. 2\nAnswer: A\n\n"
                              "The order of the group Z_6 is\nA. 3\nB. 6\nC. 2\nD. 12\nAnswer:")
    assert mmlu[0].letter_prefix == " "
    macro = [i for i in mmlu if i.question.subject == "high_school_macroeconomics"]
    assert macro[2].question.question == "A central bank lowering rates, ceteris paribus, tends to"  # quoted commas

    cmmlu = mc.load_items("cmmlu", FIXTURES / "cmmlu", shots=1, limit=1)
    assert len(cmmlu) == 5
    assert cmmlu[0].prompt == ("以下是中国关于农学考试的单项选择题，请选出其中的正确答案。\n 玉米属于？\nA. 粮食作物\nB. 饮料\n"
                               "C. 木材\nD. 药材\n答案： A\n\n\n水稻主要生长在？\nA. 沙漠\nB. 水田\nC. 冰川\nD. 高山\n答案： ")
    assert cmmlu[0].question.id == "0"  # CMMLU's unnamed index column


# Always-"B" answers on the fixtures, by hand: C-Eval computer_network 2/4, college_physics 2/3, marxism 1/3,
# modern_chinese_history 0/2, civil_servant 2/3; MMLU abstract_algebra 2/3, college_physics 1/2, philosophy 2/2,
# high_school_macroeconomics 0/3, nutrition 1/2; CMMLU anatomy 1/2, astronomy 2/2, philosophy 1/3, economics 1/2,
# agronomy 1/2.
ALWAYS_B = {
    "ceval": {"count": 15, "correct": 7, "micro": F(7, 15), "macro": F(13, 30),
              "categories": {"STEM": (F(4, 7), F(7, 12)), "Social Science": (F(1, 3), F(1, 3)),
                             "Humanities": (0, 0), "Other": (F(2, 3), F(2, 3))}},
    "mmlu": {"count": 12, "correct": 6, "micro": F(1, 2), "macro": F(8, 15),
             "categories": {"STEM": (F(3, 5), F(7, 12)), "humanities": (1, 1), "social sciences": (0, 0),
                            "other (business, health, misc.)": (F(1, 2), F(1, 2))}},
    "cmmlu": {"count": 11, "correct": 6, "micro": F(6, 11), "macro": F(17, 30),
              "categories": {"STEM": (F(3, 4), F(3, 4)), "Humanities": (F(1, 3), F(1, 3)),
                             "Social Science": (F(1, 2), F(1, 2)), "Other": (F(1, 2), F(1, 2))}},
}


@pytest.mark.parametrize("task", ["ceval", "mmlu", "cmmlu"])
def test_controlled_model_gives_the_expected_averages_under_both_protocols(task, tokenizer, tmp_path):
    scorer = HFScorer(preferring_model({letter_id(tokenizer, "B"): 5.0}), tokenizer, torch.device("cpu"))
    want = ALWAYS_B[task]
    for protocol in ("generate", "loglik"):
        m = run_eval(scorer, task, FIXTURES / task, tmp_path / protocol, protocol=protocol, batch_size=4,
                     progress=False)
        assert (m["protocol"], m["count"], m["correct"], m["no_answer"]) == (protocol, want["count"],
                                                                             want["correct"], 0)
        # sums of float fractions: equal to the exact fraction to 1e-12
        assert m["micro_average"] == pytest.approx(float(want["micro"]), abs=1e-12)
        assert m["macro_average"] == pytest.approx(float(want["macro"]), abs=1e-12)
        assert list(m["categories"]) == list(want["categories"])
        for name, (micro, macro) in want["categories"].items():
            assert m["categories"][name]["accuracy_micro"] == pytest.approx(float(micro), abs=1e-12)
            assert m["categories"][name]["accuracy_macro"] == pytest.approx(float(macro), abs=1e-12)
        rows = (tmp_path / protocol / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(rows) == want["count"] and all('"prediction": "B"' in r for r in rows)


def test_protocols_differ_when_the_model_prefers_a_non_letter(tokenizer, tmp_path):
    # "X" first, then "C": greedy text starts with X (no answer); among the letters C is the most likely
    scorer = HFScorer(preferring_model({letter_id(tokenizer, "X"): 8.0, letter_id(tokenizer, "C"): 4.0}),
                      tokenizer, torch.device("cpu"))
    gen = run_eval(scorer, "ceval", FIXTURES / "ceval", tmp_path / "g", protocol="generate", progress=False)
    assert (gen["correct"], gen["no_answer"], gen["micro_average"]) == (0, 15, 0.0)
    ll = run_eval(scorer, "ceval", FIXTURES / "ceval", tmp_path / "l", protocol="loglik", progress=False)
    # gold C: computer_network 1, college_physics 1, modern_chinese_history 1
    assert (ll["correct"], ll["no_answer"]) == (3, 0)
    assert ll["subjects"]["modern_chinese_history"]["accuracy"] == 0.5


def _transformers_greedy(model, tokenizer, prompt: str, max_new_tokens: int, stops: list[int]) -> str:
    ids = torch.tensor([tokenizer.encode(prompt)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
    return tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


@pytest.mark.parametrize("shots", [0, 2])
def test_batched_scoring_equals_one_at_a_time_and_transformers_generate(tokenizer, shots):
    """A subject's batch shares its shot text (run once, its cache reused, rows left-padded after it): the
    predictions equal transformers' own greedy generate, one prompt at a time, and the log-likelihoods equal
    one pair at a time."""
    from tunebridge.evaluation.greedy import worth_sharing
    model = random_model(1)
    scorer = HFScorer(model, tokenizer, torch.device("cpu"))
    items = [i for i in mc.load_items("mmlu", FIXTURES / "mmlu", shots=shots) if i.question.subject in
             ("abstract_algebra", "high_school_macroeconomics")]
    prompts = [i.prompt for i in items if i.question.subject == "high_school_macroeconomics"]
    if shots:  # the shot text is long enough to be run once
        assert worth_sharing([tokenizer.encode(p) for p in prompts]) > 100
    stops = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    want = [_transformers_greedy(model, tokenizer, p, 6, stops) for p in prompts]
    assert scorer.generate(prompts, 6, stop=("<|im_end|>",)) == want
    assert [scorer.generate([p], 6, stop=("<|im_end|>",))[0] for p in prompts] == want
    pairs = [p for i in items for p in mc.option_pairs(i)]
    batched = scorer.loglikelihood([c for c, _ in pairs], [x for _, x in pairs])
    single = [scorer.loglikelihood([c], [x])[0] for c, x in pairs]
    assert batched == pytest.approx(single, abs=1e-4)
    longer = [(c, " so the answer is" + x) for c, x in pairs[:8]]  # several tokens, rows of their own
    assert scorer.loglikelihood(*zip(*longer)) == pytest.approx(
        [scorer.loglikelihood([c], [x])[0] for c, x in longer], abs=1e-4)


def test_shared_prefix_and_length_buckets_change_no_prediction(tokenizer, monkeypatch):
    """The shot text attended once by every row (one copy of its keys and values, the rows' own attention
    merged with it) and rows split into length buckets give the predictions and log-likelihoods of the plain
    batch: one forward of every row with its whole prompt."""
    from tunebridge.evaluation import hf_scorer, shared_prefix
    model = random_model(2)
    scorer = HFScorer(model, tokenizer, torch.device("cpu"))
    assert scorer.shares_prefix
    items = [i for i in mc.load_items("ceval", FIXTURES / "ceval", shots=2)
             if i.question.subject == "computer_network"]
    prompts = [i.prompt for i in items]
    pairs = [p for i in items for p in mc.option_pairs(i)]
    forwards, keys = [], []
    model.register_forward_pre_hook(lambda _, args, kw: forwards.append(tuple(kw["input_ids"].shape)),
                                    with_kwargs=True)
    attend = shared_prefix._attend
    monkeypatch.setattr(shared_prefix, "_attend", lambda q, k, *rest, **kw: keys.append(k.shape) or
                        attend(q, k, *rest, **kw))

    def run(shares: bool, forward_cost: int):
        scorer.shares_prefix = shares
        monkeypatch.setattr(hf_scorer, "FORWARD_COST", forward_cost)
        forwards.clear(), keys.clear()
        got = scorer.generate(prompts, 4), scorer.loglikelihood([c for c, _ in pairs], [x for _, x in pairs])
        return got, list(forwards), list(keys)

    (want_text, want_loglik), plain, _ = run(False, 10 ** 9)
    assert plain[0] == (len(prompts), max(len(tokenizer.encode(p)) for p in prompts))  # whole prompts, one batch
    for shares, forward_cost in ((True, 10 ** 9), (True, 0), (False, 0)):
        (text, loglik), calls, attended = run(shares, forward_cost)
        assert text == want_text, (shares, forward_cost)
        assert loglik == pytest.approx(want_loglik, abs=1e-4), (shares, forward_cost)
        prefills = [c for c in calls if c[1] > 1]
        if shares:  # the shot text runs once per call, one row, and is attended as one copy
            assert prefills[0] == (1, 221) and prefills[len(prefills) // 2] == (1, 221)
            own = max(len(tokenizer.encode(p)) for p in prompts) - 221 + 4
            assert (1, 2, 221, 16) in attended and all(k[2] <= own or k[:3] == (1, 2, 221) for k in attended)
        # one bucket per distinct length when a forward costs nothing: generate's and loglik's, 4 each
        assert len(prefills) - 2 * shares == (8 if forward_cost == 0 else 2)


def test_greedy_stops_like_transformers(tokenizer):
    """Rows that finish at different steps (here: two with eos at once, one after "B") decode as transformers'
    generate decodes them one at a time."""
    model = preferring_model({letter_id(tokenizer, "B"): 5.0, tokenizer.eos_token_id: 4.0})
    with torch.no_grad():  # after "B" the model prefers eos
        model.lm_head.weight[tokenizer.eos_token_id, 1] = 50.0
        model.model.embed_tokens.weight[letter_id(tokenizer, "B"), 1] = 1.0
        model.model.norm.weight[1] = 1.0
    scorer = HFScorer(model, tokenizer, torch.device("cpu"))
    prompts = ["问：一加一？答：", "B", "The answer is"]
    want = [_transformers_greedy(model, tokenizer, p, 5, [tokenizer.eos_token_id]) for p in prompts]
    assert scorer.generate(prompts, 5) == want


def test_averages_and_letters():
    q = [mc.Question(s, str(i), "q", ("a", "b", "c", "d"), a, "f:1")
         for i, (s, a) in enumerate([("law", "A"), ("law", "B"), ("logic", "C"), ("physician", "D")])]
    m = mc.averages("ceval", q, ["A", None, "C", "A"])
    assert (m["correct"], m["no_answer"], m["micro_average"], m["macro_average"]) == (2, 1, 0.5, (0.5 + 1 + 0) / 3)
    assert m["categories"]["Humanities"] == {"subjects": ["law", "logic"], "correct": 2, "total": 3,
                                             "accuracy_micro": 2 / 3, "accuracy_macro": 0.75}
    assert mc.letter_of("  B. 因为") == "B" and mc.letter_of("b") is None and mc.letter_of("") is None
    assert mc.best_letter([-1.0, -0.5, -0.5, -2.0]) == "B"  # ties go to the earlier letter
    unknown = mc.averages("cmmlu", q[:1], ["A"])
    assert list(unknown["categories"]) == [mc.UNCATEGORIZED]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def test_bad_input(tmp_path):
    root = tmp_path / "ceval"
    _write(root / "val" / "law_val.csv", "id,question,A,B,C,D\n0,q,a,b,c,d\n")
    with pytest.raises(TunebridgeError, match=r"law_val\.csv:1: missing column 'answer'"):
        mc.load_items("ceval", root, shots=0)
    _write(root / "val" / "law_val.csv", "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n1,q2,a,b,c,d,E\n")
    with pytest.raises(TunebridgeError, match=r"law_val\.csv:3: answer 'E' is not one of A, B, C, D"):
        mc.load_items("ceval", root, shots=0)
    _write(root / "val" / "law_val.csv", "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n".encode() + b"1,\xff,a,b,c,d,B\n")
    with pytest.raises(TunebridgeError, match=r"law_val\.csv:3: not UTF-8 \(byte 0xff"):
        mc.load_items("ceval", root, shots=0)
    _write(root / "val" / "law_val.csv", "id,question,A,B,C,D,answer\n0,q,a,b,c,d,A\n")
    with pytest.raises(TunebridgeError, match=r"dev/law_dev\.csv: no such dev file"):
        mc.load_items("ceval", root)
    _write(tmp_path / "mmlu" / "test" / "x_test.csv", "q,a,b,c,d,A\nq,a,b,c,A\n")
    with pytest.raises(TunebridgeError, match=r"x_test\.csv:2: 5 fields, expected 6"):
        mc.load_items("mmlu", tmp_path / "mmlu", shots=0)
    with pytest.raises(TunebridgeError, match=r"x_test\.csv:1: missing column 'question'"):
        mc.load_items("cmmlu", tmp_path / "mmlu", shots=0)  # CMMLU files have a header
    with pytest.raises(TunebridgeError, match="not a cmmlu directory"):
        mc.load_items("cmmlu", root)
    q = mc.load_items("ceval", root, shots=0)[0].question
    with pytest.raises(TunebridgeError, match="2 predictions for 1 questions"):
        mc.averages("ceval", [q], ["A", "B"])
    with pytest.raises(TunebridgeError, match="no questions"):
        mc.averages("ceval", [], [])


def test_where_each_question_comes_from_and_unknown_cmmlu_subjects(tmp_path):
    mmlu = mc.load_items("mmlu", FIXTURES / "mmlu", shots=0)
    first = mmlu[0].question
    assert (first.subject, first.id) == ("abstract_algebra", "0")
    assert first.source == f"{FIXTURES / 'mmlu' / 'test' / 'abstract_algebra_test.csv'}:1"  # MMLU: no header row
    assert [q.question.id for q in mmlu if q.question.subject == "abstract_algebra"][:3] == ["0", "1", "2"]
    # a CMMLU subject outside CMMLU's 67 is named by its file name, underscores as spaces
    for split in ("test", "dev"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "folk_music.csv").write_text(",Question,A,B,C,D,Answer\n0,问？,甲,乙,丙,丁,A\n",
                                                         encoding="utf-8")
    (item,) = mc.load_items("cmmlu", tmp_path, shots=0)
    assert item.prompt.startswith("以下是中国关于folk music考试的单项选择题，请选出其中的正确答案。\n ")


def test_every_error_names_its_file_and_line(tmp_path):
    def refused(message: str, call) -> None:
        with pytest.raises(TunebridgeError, match="^" + re.escape(message) + "$"):
            call()
    refused("unknown multiple-choice task 'mmlux'; did you mean 'mmlu'? (known: ceval, mmlu, cmmlu)",
            lambda: mc.load_items("mmlux", tmp_path))
    refused(f"{tmp_path}: not a mmlu directory (expected it, or a child of it, to be one of: test, val, next to "
            f"dev/)", lambda: mc.load_items("mmlu", tmp_path))
    (tmp_path / "test").mkdir()
    _write(tmp_path / "test" / "_test.csv", "q,a,b,c,d,A\n")  # no subject before the suffix: not a subject file
    _write(tmp_path / "test" / "solutions.csv", "q,a,b,c,d,A\n")  # nor is a file without the suffix
    refused(f"{tmp_path / 'test'}: no <subject>_test.csv files", lambda: mc.load_items("mmlu", tmp_path, shots=0))
    law = _write(tmp_path / "ceval" / "val" / "law_val.csv", "")
    refused(f"{law}: empty file (expected a header row)", lambda: mc.load_items("ceval", tmp_path / "ceval"))
    _write(law, "id,question,A,B,C\n")
    refused(f"{law}:1: missing column 'd' (header has: id, question, A, B, C)",
            lambda: mc.load_items("ceval", tmp_path / "ceval"))
    _write(law, "id,question,A,B,C,D,answer\n")
    refused(f"{law}: no questions", lambda: mc.load_items("ceval", tmp_path / "ceval"))
    _write(law, 'id,question,A,B,C,D,answer\n0,"two\nlines",a,b,c,d,A\n1,q,a,b,c,d\n')
    refused(f"{law}:4: 6 fields, the header has 7", lambda: mc.load_items("ceval", tmp_path / "ceval"))
    _write(law, "id,question,A,B,C,D,answer\n0," + "x" * 140_000 + ",a,b,c,d,A\n")
    refused(f"{law}:2: malformed CSV: field larger than field limit (131072)",
            lambda: mc.load_items("ceval", tmp_path / "ceval"))
    mmlu = _write(tmp_path / "test" / "x_test.csv", '"a question\non two lines",a,b,c,A\n')
    refused(f"{mmlu}:1: 5 fields, expected 6 (question,A,B,C,D,answer; MMLU files have no header)",
            lambda: mc.load_items("mmlu", tmp_path, shots=0))
    refused("3 option log-likelihoods, expected 4", lambda: mc.best_letter([-1.0, -2.0, -3.0]))
    refused("no questions to score", lambda: mc.averages("ceval", [], []))


def test_question_ids_by_layout(tmp_path):
    """C-Eval's id column wherever it stands, CMMLU's unnamed index column, else the row's place (from 0)."""
    def ids(task: str, text: str) -> list[str]:
        for split in ("test", "val"):
            _write(tmp_path / task / split / f"law_{split}.csv", text)
        return [item.question.id for item in mc.load_items(task, tmp_path / task, shots=0)]
    assert ids("ceval", "question,A,B,C,D,id,answer\nq,a,b,c,d,x7,A\nq,a,b,c,d,x8,B\n") == ["x7", "x8"]
    assert ids("ceval", "question,A,B,C,D,answer\nq,a,b,c,d,A\nq,a,b,c,d,B\n") == ["0", "1"]
    assert ids("cmmlu", ",Question,A,B,C,D,Answer\n7,q,a,b,c,d,A\n8,q,a,b,c,d,B\n") == ["7", "8"]
    assert ids("cmmlu", "Question,A,B,C,D,Answer\nq,a,b,c,d,A\nq,a,b,c,d,B\n") == ["0", "1"]
    # a question is read as the file holds it, a line break inside quotes included (the file's CRLF too)
    _write(tmp_path / "crlf" / "val" / "law_val.csv", 'id,question,A,B,C,D,answer\r\n0,"two\r\nlines",a,b,c,d,A\r\n')
    assert mc.load_items("ceval", tmp_path / "crlf", shots=0)[0].question.question == "two\r\nlines"
    mmlu = mc.load_items("mmlu", FIXTURES / "mmlu", shots=0)
    file = FIXTURES / "mmlu" / "test" / "abstract_algebra_test.csv"
    assert [(q.question.id, q.question.source) for q in mmlu[:2]] == [("0", f"{file}:1"), ("1", f"{file}:2")]


def test_five_shots_by_default_and_the_averages_labelled(tmp_path):
    rows = "".join(f"q{i},a,b,c,d,A\n" for i in range(7))
    _write(tmp_path / "test" / "law_test.csv", rows)
    _write(tmp_path / "dev" / "law_dev.csv", rows)
    (item,) = mc.load_items("mmlu", tmp_path, limit=1)
    assert [f"q{i}" in item.prompt for i in range(7)] == [True] * 5 + [False] * 2  # 5 shots; the question is q0
    q = [mc.Question(s, "0", "q", ("a", "b", "c", "d"), "A", "f:1") for s in ("sports_science", "law", "mars")]
    m = mc.averages("ceval", q, ["A", "A", "B"])
    assert list(m["categories"]) == ["Humanities", "Other", mc.UNCATEGORIZED]  # C-Eval's order, then the rest
    assert m["averages_rule"] == {
        "micro_average": "correct / questions, pooled over all subjects (MindSpeed-LLM's total)",
        "macro_average": "mean of the subjects' accuracies", "accuracy_micro": "category: pooled over its questions",
        "accuracy_macro": "category: mean of its subjects' accuracies"}
