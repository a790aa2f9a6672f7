"""MindSpeed-LLM's protocol for C-Eval, MMLU and CMMLU, labelled ``mindspeed-llm``.

What its ``evaluation.py`` does on its default path (no ``--prompt-type``, no ``--alternative-prompt``;
2.3.0 and master are the same), reproduced here and held to records its own code made
(``tests/fixtures/mindspeed_llm_eval/``):

- Reading: ``pandas.read_csv`` — C-Eval with its header, MMLU with ``names=[question, A, B, C, D, answer]``,
  CMMLU with those names and its header row skipped (the unnamed first column becomes the index). So
  ``NA``, ``None``, ``N/A``, empty cells read as ``nan``, and all-numeric columns are rewritten (``0.50`` ->
  ``0.5``, ``10`` -> ``10.0`` beside ``2.5``, ``1e3`` -> ``1000.0``); each cell enters the prompt as ``str()``
  of that value. tunebridge reads with pandas too, the same calls.
- Shots: its fixed 5-shot texts (``fewshot_template/*_5shot_template.json``). ``fewshot_dir`` takes them
  from a checkout; otherwise they are written from the subject's first five dev rows in their shape, which
  equals the shipped texts for every subject but MMLU ``nutrition`` (its text ends with a sixth, bare
  question line).
- Prompt: the shot text + the question (:mod:`.multiple_choice`'s shapes). With a chat template and no
  ``--no-chat-template``, the model reads ``tokenizer.apply_chat_template([{"role": "user", "content":
  prompt}])`` token ids: no generation prompt, no added bos; else ``tokenizer.encode(prompt)``.
- Greedy decoding of ``--max-new-tokens`` tokens (its example scripts: 1), special tokens dropped.
- Extraction: C-Eval counts the whole stripped output if it is the letter; MMLU takes the last ``X.`` on the
  first line (X in ``A B C D |``), else a leading letter; CMMLU searches its answer patterns in order, then
  ``X:`` and any capital A-D.
- Known defect, not imitated: with ``--evaluation-batch-size`` > 1 its ``cmmlu_eval.py`` counts only the
  first question of each batch (a ``break`` in its result loop; 2 of 8 right answers at batch 4), while
  dividing by all. tunebridge scores every question: equal to MindSpeed-LLM at batch size 1, which the
  rendered evaluate script uses.

The defaults below are what the rendered evaluate script passes (one fact for both sides).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import TunebridgeError
from .multiple_choice import LETTERS, Benchmark, Item, Question, load_items as _load_items, options_of

PROTOCOL = "mindspeed-llm"
CHAT_TEMPLATE = False  # rendered as --no-chat-template, as MindSpeed-LLM's own evaluate examples do
MAX_NEW_TOKENS = 1
BATCH_SIZE = 1  # --evaluation-batch-size: 1 keeps its CMMLU count right
SHOTS = 5
FEWSHOT_FILES = {
    "ceval": "ceval_5shot_template.json",
    "mmlu": "mmlu_5shot_template.json",
    "cmmlu": "cmmlu_5shot_template.json",
}
FEWSHOT_DIR_IN_CHECKOUT = "mindspeed_llm/tasks/evaluation/eval_impl/fewshot_template"
_NAMES = ["question", "A", "B", "C", "D", "answer"]

# CMMLU's answer patterns in MindSpeed-LLM's order (its configs/evaluate/cmmlu_answer_finding_patterns.json,
# OpenCompass's first_option_postprocess), then its two fall-backs.
CMMLU_PATTERNS = (
    r"答案是?\s*([ABCD])",
    r"答案是?\s*：\s*([ABCD])",
    r"答案是?\s*:\s*([ABCD])",
    r"答案应该?是\s*([ABCD])",
    r"答案应该?选\s*([ABCD])",
    r"答案为\s*([ABCD])",
    r"答案选\s*([ABCD])",
    r"选择?\s*([ABCD])",
    r"故选?\s*([ABCD])",
    r"只有选?项?\s?([ABCD])\s?是?对",
    r"只有选?项?\s?([ABCD])\s?是?错",
    r"只有选?项?\s?([ABCD])\s?不?正确",
    r"只有选?项?\s?([ABCD])\s?错误",
    r"说法不?对选?项?的?是\s?([ABCD])",
    r"说法不?正确选?项?的?是\s?([ABCD])",
    r"说法错误选?项?的?是\s?([ABCD])",
    r"([ABCD])\s?是正确的",
    r"([ABCD])\s?是正确答案",
    r"选项\s?([ABCD])\s?正确",
    r"所以答\s?([ABCD])",
    r"所以\s?([ABCD][.。$]?$)",
    r"所有\s?([ABCD][.。$]?$)",
    r"[\s，：:,]([ABCD])[。，,\.]?$",
    r"[\s，,：:][故即]([ABCD])[。\.]?$",
    r"[\s，,：:]因此([ABCD])[。\.]?$",
    r"[是为。]\s?([ABCD])[。\.]?$",
    r"因此\s?([ABCD])[。\.]?$",
    r"显然\s?([ABCD])[。\.]?$",
    r"答案是\s?(\S+)(?:。|$)",
    r"答案应该是\s?(\S+)(?:。|$)",
    r"答案为\s?(\S+)(?:。|$)",
    r"[Tt]he answer is:?\s+\(?([ABCD])\)?",
    r"[Tt]he answer is option:?\s+\(?([ABCD])\)?",
    r"[Tt]he correct answer is:?\s+\(?([ABCD])\)?",
    r"[Tt]he correct answer is option:?\s+\(?([ABCD])\)?",
    r"[Tt]he answer to the question is:?\s+\(?([ABCD])\)?",
    r"^选项\s?([ABCD])",
    r"^([ABCD])\s?选?项",
    r"(\s|^)[ABCD][\s。，,：:\.$]",
    r"(\s|^)[ABCD](\s|$)",
    r"1.\s?(.*?)$",
    r"1.\s?([ABCD])[.。$]?$",
    r"([ABCD]):",
    r"[ABCD]",
)
_CMMLU_REGEXES = tuple(re.compile(p, re.DOTALL) for p in CMMLU_PATTERNS)
_MMLU_MARKED = re.compile(r"([ABCD|])\.")


# --- reading ------------------------------------------------------------------------------------------


def _frame(task: str, path: Path):
    import pandas as pd

    try:
        if task == "ceval":
            return pd.read_csv(path)
        if task == "mmlu":
            return pd.read_csv(path, names=_NAMES)
        return pd.read_csv(path, names=_NAMES, header=None, skiprows=1)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise TunebridgeError(
            f"{path}: pandas cannot read it as MindSpeed-LLM does: {str(e).splitlines()[0]}"
        ) from None


def read_subject(bench: Benchmark, path: Path, subject: str) -> list[Question]:
    """The questions of one file as MindSpeed-LLM's pandas reading gives them (cells as ``str()`` of the value)."""
    frame = _frame(bench.name, path)
    missing = [c for c in ("question", *LETTERS, "answer") if c not in frame.columns]
    if missing:
        raise TunebridgeError(f"{path}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    out = []
    for n, (_, row) in enumerate(frame.iterrows()):
        answer = row["answer"]
        # C-Eval compares the stripped answer; MMLU and CMMLU compare it as read
        letter = (answer.strip() if bench.name == "ceval" else answer) if isinstance(answer, str) else None
        if letter not in LETTERS:
            raise TunebridgeError(
                f"{path}: data row {n + 1}: answer {answer!r} is not one of A, B, C, D as "
                f"MindSpeed-LLM compares it{'' if bench.name == 'ceval' else ' (unstripped)'}"
            )
        qid = f"{row['id']}" if "id" in frame.columns else str(n)
        out.append(
            Question(
                subject,
                qid,
                f"{row['question']}",
                options_of(f"{row[k]}" for k in LETTERS),
                letter,
                f"{path}: data row {n + 1}",
            )
        )
    return out


def shipped_shots(task: str, fewshot_dir: str | Path) -> dict[str, str]:
    """MindSpeed-LLM's fixed few-shot texts for ``task``, subject -> text, from its checkout's directory."""
    path = Path(fewshot_dir) / FEWSHOT_FILES[task]
    try:
        texts = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TunebridgeError(f"{path}: no such file (pass MindSpeed-LLM's {FEWSHOT_DIR_IN_CHECKOUT})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TunebridgeError(f"{path}: not a JSON few-shot file ({e})") from None
    if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
        raise TunebridgeError(f"{path}: expected an object of subject -> few-shot text")
    return texts


def load_items(
    task: str, path: str | Path, shots: int = SHOTS, limit: int | None = None, fewshot_dir: str | Path | None = None
) -> list[Item]:
    """Every question with MindSpeed-LLM's prompt: shipped shot texts from ``fewshot_dir``, else dev rows."""
    return _load_items(
        task,
        path,
        shots=shots,
        limit=limit,
        read=read_subject,
        shipped=shipped_shots(task, fewshot_dir) if fewshot_dir is not None else None,
    )


# --- what the model reads -------------------------------------------------------------------------------


def model_input(tokenizer, prompt: str, chat_template: bool) -> str | list[int]:
    """The prompt as MindSpeed-LLM hands it to the model: chat-template token ids, or the text to encode."""
    if not chat_template or tokenizer.chat_template is None:
        return prompt
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def chat_template_used(tokenizer, chat_template: bool) -> str:
    if not chat_template:
        return "off (--no-chat-template)"
    return (
        "applied (no generation prompt)"
        if tokenizer.chat_template is not None
        else "none: the tokenizer has no chat template"
    )


# --- answers ---------------------------------------------------------------------------------------------


def _mmlu(output: str) -> str | None:
    text = output.lstrip()
    marked = list(_MMLU_MARKED.finditer(text.split("\n", 1)[0]))
    if marked:
        return marked[-1].group(1)
    return text[0] if text and text[0] in "ABCD|" else None


def _cmmlu(output: str) -> str:
    text = output.strip()
    for regex in _CMMLU_REGEXES:
        match = regex.search(text)
        if match and match.group(0)[-1] in LETTERS:
            return match.group(0)[-1]
    return ""


def extract(task: str, output: str) -> str | None:
    """The answer MindSpeed-LLM reads from an output (as it records it: any text for C-Eval, None/"" for none)."""
    if task == "ceval":
        return output.strip()
    return _mmlu(output) if task == "mmlu" else _cmmlu(output)


def letter(extracted: str | None) -> str | None:
    """The option an extracted answer names, if it names one (what is compared with the gold letter)."""
    return extracted if extracted in LETTERS else None


def describe(fewshot_dir: str | Path | None, shots: int) -> str:
    return (
        f"MindSpeed-LLM's shipped few-shot texts ({Path(fewshot_dir) / '<task>_5shot_template.json'})"
        if fewshot_dir is not None
        else f"the first {shots} dev rows, in MindSpeed-LLM's shot shape"
    )


def batch_note(task: str) -> str | None:
    if task != "cmmlu":
        return None
    return (
        "MindSpeed-LLM's cmmlu_eval.py counts only the first question of each batch when "
        "--evaluation-batch-size > 1; every question is scored here, as it does at batch size 1"
    )


def inputs_for(items: Sequence[Item], tokenizer, chat_template: bool) -> list[str | list[int]]:
    return [model_input(tokenizer, item.prompt, chat_template) for item in items]
