"""The ``mindspeed-llm`` protocol against records MindSpeed-LLM's own evaluation code made
(tests/fixtures/mindspeed_llm_eval, see its README): prompts byte for byte, the model's token ids with and
without the chat template, answer extraction per task, and its CMMLU batch defect (documented, not copied)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunebridge.cli import main
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation import protocol_mindspeed_llm as ms
from tunebridge.evaluation.hf_scorer import HFScorer
from tunebridge.evaluation.runner import run_eval
from tunebridge.evaluation.tokens import load_eval_tokenizer
from tunebridge.evaluation.tokens import prompt_ids

from .test_eval_multiple_choice import letter_id, preferring_model
from .test_render import fake_bin, flag_values, run_script  # noqa: F401 (fake_bin is a fixture)

GOLDEN = Path(__file__).parent / "fixtures" / "mindspeed_llm_eval"


def golden(name: str):
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def _prompts(task: str, fewshot_dir=None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in ms.load_items(task, GOLDEN / "data" / task, fewshot_dir=fewshot_dir):
        out.setdefault(item.question.subject, []).append(item.prompt)
    return out


@pytest.mark.parametrize("task", ["ceval", "mmlu", "cmmlu"])
def test_prompts_equal_mindspeed_llms_byte_for_byte(task):
    want = golden("prompts.json")[task]
    assert _prompts(task, GOLDEN / "fewshot") == want  # its shipped shot texts
    built = _prompts(task)  # shots written from the dev rows
    for subject, prompts in want.items():
        if (task, subject) == ("mmlu", "nutrition"):
            # its shipped text carries a sixth, bare question line after the five shots
            extra = "\nWhich foods tend to be consumed in lower quantities in Wales and Scotland (as of 2020)?"
            assert [p.replace("Answer: B\n\n", "Answer: B" + extra + "\n\n", 1) for p in built[subject]] == prompts
        else:
            assert built[subject] == prompts


def test_pandas_cells_reach_the_prompt_as_mindspeed_llm_reads_them():
    items = {(i.question.subject, i.question.id): i.question for i in ms.load_items("ceval", GOLDEN / "data" / "ceval")}
    assert items["computer_network", "4"].options == ("nan", "nan", "nan", "nan")  # NA, None, N/A, empty
    assert items["computer_network", "3"].options[3] == " 压缩 "                     # spaces kept
    assert items["high_school_physics", "0"].options == ("0.5", "10.0", "2.5", "7.0")  # float columns rewritten
    assert items["high_school_physics", "2"].options[0] == "1000.0"                  # 1e3


def _bos_tokenizer():
    from tokenizers.processors import TemplateProcessing
    tok = load_eval_tokenizer(None)
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.convert_tokens_to_ids("<s>"))])
    return tok


def test_model_input_ids_with_and_without_the_chat_template():
    record = golden("chat_ids.json")
    tokenizers = {"embedded": load_eval_tokenizer(None), "embedded+bos": _bos_tokenizer()}
    checked = 0
    for name, tok in tokenizers.items():
        tok.chat_template = record["chat_template"]
        for key, case in record["prompts"].items():
            for chat in (True, False):
                want = case[f"{name}, {'chat template' if chat else 'no chat template'}"]
                assert prompt_ids(tok, ms.model_input(tok, case["instruction"], chat)) == want, (name, key, chat)
                checked += 1
    assert checked == 12


@pytest.mark.parametrize("task", ["ceval", "mmlu", "cmmlu"])
def test_answer_extraction_equals_mindspeed_llms(task):
    rows = golden("extraction.json")[task]
    assert len(rows) == 58
    for row in rows:
        extracted = ms.extract(task, row["output"])
        assert extracted == row["extracted"], row
        assert (ms.letter(extracted) == row["answer"]) is row["correct"], row


def test_extraction_differs_by_task_as_issued():
    # the same outputs, three verdicts: whole output (C-Eval), last "X." on line one (MMLU), patterns (CMMLU)
    assert [ms.letter(ms.extract(t, "A.")) for t in ("ceval", "mmlu", "cmmlu")] == [None, "A", "A"]
    assert [ms.letter(ms.extract(t, "答案是B")) for t in ("ceval", "mmlu", "cmmlu")] == [None, None, "B"]
    assert ms.extract("mmlu", "C. because A. is wrong") == "A"


def test_cmmlu_batches_are_scored_whole_unlike_mindspeed_llm(tmp_path):
    record = golden("cmmlu_batches.json")
    assert (record["evaluation_batch_size"], record["questions"], record["counted_correct"]) == (4, 8, 2)
    data = tmp_path / "cmmlu"
    (data / "test").mkdir(parents=True)
    (data / "test" / "agronomy.csv").write_text(",Question,A,B,C,D,Answer\n" + "".join(
        f"{i},第{i}题,甲,乙,丙,丁,B\n" for i in range(8)), encoding="utf-8")
    tok = load_eval_tokenizer(None)
    scorer = HFScorer(preferring_model({letter_id(tok, "B"): 5.0}), tok, torch.device("cpu"))
    m = run_eval(scorer, "cmmlu", data, tmp_path / "o", batch_size=4, shots=0, progress=False)
    assert (m["protocol"], m["count"], m["correct"], m["micro_average"]) == ("mindspeed-llm", 8, 8, 1.0)
    assert "first question of each batch" in m["note"]


def test_eval_run_defaults_to_the_mindspeed_llm_protocol(tmp_path, capsys):
    tok = load_eval_tokenizer(None)
    model_dir = tmp_path / "model"
    model = preferring_model({letter_id(tok, "B"): 5.0})
    model.config.max_position_embeddings = 2048  # MMLU nutrition's 5-shot prompt has 1,074 tokens
    model.save_pretrained(model_dir)
    out = tmp_path / "o"
    assert main(["eval", "run", str(model_dir), "--task", "mmlu", "--data", str(GOLDEN / "data" / "mmlu"),
                 "--fewshot-dir", str(GOLDEN / "fewshot"), "--out", str(out), "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (m["protocol"], m["max_new_tokens"], m["shots"], m["chat_template"]) == (
        "mindspeed-llm", 1, "shipped", "off (--no-chat-template)")
    assert (m["count"], m["correct"]) == (11, 1)  # one gold B among the 11 questions
    rows = [json.loads(r) for r in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(r["output"], r["extracted"], r["prediction"]) for r in rows} == {("B", "B", "B")}
    capsys.readouterr()
    assert main(["eval", "run", str(model_dir), "--task", "mmlu", "--data", str(GOLDEN / "data" / "mmlu"),
                 "--protocol", "loglik", "--fewshot-dir", str(GOLDEN / "fewshot"), "--out", str(tmp_path / "x"),
                 "--no-progress"]) == 2
    assert "--fewshot-dir and --chat-template are MindSpeed-LLM's" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_input(tmp_path):
    root = tmp_path / "mmlu"
    (root / "test").mkdir(parents=True)
    (root / "test" / "nutrition_test.csv").write_text("q,a,b,c,d, A\n", encoding="utf-8")
    with pytest.raises(TunebridgeError, match=r"nutrition_test\.csv: data row 1: answer ' A' .*\(unstripped\)"):
        ms.load_items("mmlu", root, shots=0)
    (root / "test" / "nutrition_test.csv").write_text("q,a,b,c,d,A\n", encoding="utf-8")
    (tmp_path / "few").mkdir()
    (tmp_path / "few" / "mmlu_5shot_template.json").write_text('{"virology": "x"}', encoding="utf-8")
    with pytest.raises(TunebridgeError, match="no text for subject 'nutrition'"):
        ms.load_items("mmlu", root, fewshot_dir=tmp_path / "few")
    with pytest.raises(TunebridgeError, match=r"ceval_5shot_template\.json: no such file"):
        ms.load_items("ceval", root, fewshot_dir=tmp_path / "few")
    ceval = tmp_path / "ceval" / "val"
    ceval.mkdir(parents=True)
    (ceval / "law_val.csv").write_text("id,question,A,B,C,D,answer\n0,q,a,b,c,d,NA\n", encoding="utf-8")
    with pytest.raises(TunebridgeError, match=r"law_val\.csv: data row 1: answer nan is not one of"):
        ms.load_items("ceval", ceval, shots=0)


def test_rendered_evaluate_script_runs_the_same_protocol(tmp_path, fake_bin):
    """Issue 13 item 8: evaluation.py's default path (no --prompt-type, which would switch to random dev shots
    in chat turns), with the protocol's chat-template choice, new tokens and batch size."""
    from tunebridge.recipe.schema import load_recipe
    from tunebridge.backends.render import render
    recipe = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")
    files = {f.name: f for f in render(recipe, "mindspeed-llm", tmp_path / "out", num_samples=64)}
    (cmd,) = run_script(files["evaluate_qwen2.5-7b-alpaca-zh-lora_ptd.sh"], fake_bin, tmp_path, {})
    f = flag_values(cmd[cmd.index("evaluation.py") + 1:])
    assert "--prompt-type" not in f and ("--no-chat-template" in f) is (not ms.CHAT_TEMPLATE)
    assert f["--max-new-tokens"] == [str(ms.MAX_NEW_TOKENS)] and f["--evaluation-batch-size"] == [str(ms.BATCH_SIZE)]
    (tmp_path / "argv.jsonl").unlink()
    (gen,) = run_script(files["generate_qwen2.5-7b-alpaca-zh-lora_ptd.sh"], fake_bin, tmp_path, {})
    assert flag_values(gen[gen.index("inference.py") + 1:])["--prompt-type"] == ["qwen"]  # chat keeps its template


def test_every_cmmlu_subject_has_its_chinese_name_and_a_category():
    from tunebridge.evaluation import multiple_choice as mc
    assert len(mc.CMMLU_SUBJECTS_ZH) == len(mc.CMMLU_CATEGORIES) == 67
    assert set(mc.CMMLU_SUBJECTS_ZH) == set(mc.CMMLU_CATEGORIES)
    assert set(mc.CMMLU_CATEGORIES.values()) == {"STEM", "Humanities", "Social Science", "Other"}
    items = ms.load_items("cmmlu", GOLDEN / "data" / "cmmlu")
    m = mc.averages("cmmlu", [i.question for i in items], ["C"] * len(items))
    assert list(m["categories"]) == ["Humanities", "Other"]  # college_law; agronomy, chinese_driving_rule
    assert m["subjects"]["college_law"]["category"] == "Humanities"
