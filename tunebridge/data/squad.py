"""The SQuAD v1.1 retention set as the seeds evaluate it: the first question of every paragraph.

MindFormers' ``squad8192.mindrecord`` (its squad_data_process.py, eval mode) holds per paragraph the prompt
below tokenized with a bos, truncated or padded (pad id) to max_length, and the first answer's ids padded
with the pad id; the JSONL twin keeps the prompt and every gold answer for scoring.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ..errors import TunebridgeError
from ..evaluation.protocol_mindformers_squad import PROMPT, prompt_ids
from ..io.atomic import atomic_dir
from .tokenizer import pad_id


def squad_eval_items(path: str | Path) -> list[dict]:
    """One item per paragraph: its first question, the prompt, and all gold answers of that question."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise TunebridgeError(f"{path}: not a SQuAD v1.1 file ({type(e).__name__}: {e})") from None
    items = []
    for a, article in enumerate(data):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            qas = paragraph.get("qas") or []
            if not qas or not qas[0].get("answers"):
                raise TunebridgeError(f"{path}: data[{a}].paragraphs[{p}] has no question with an answer")
            qa = qas[0]
            items.append(
                {
                    "id": qa.get("id", f"{a}-{p}"),
                    "question": qa["question"],
                    "prompt": PROMPT.format(context=paragraph["context"], question=qa["question"]),
                    "answers": [x["text"] for x in qa["answers"]],
                }
            )
    if not items:
        raise TunebridgeError(f"{path}: no paragraphs")
    return items


def eval_rows(items: list[dict], tokenizer, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    pad = pad_id(tokenizer)
    ids = np.full((len(items), max_length), pad, dtype=np.int32)
    labels = np.full((len(items), max_length), pad, dtype=np.int32)
    for i, item in enumerate(items):
        prompt = prompt_ids(tokenizer, item["prompt"])
        answer = tokenizer.encode(item["answers"][0], add_special_tokens=False)[:max_length]
        ids[i, : min(len(prompt), max_length)] = prompt[:max_length]
        labels[i, : len(answer)] = answer
    return ids, labels


def write_squad_eval(
    src: str | Path, out: str | Path, tokenizer, max_length: int, force: bool = False, mindrecord: bool = True
) -> dict:
    """``squad_eval.jsonl`` (+ ``squad_eval.mindrecord`` in MindFormers' layout) in ``out``."""
    items = squad_eval_items(src)
    with atomic_dir(out, force=force) as tmp:
        with open(tmp / "squad_eval.jsonl", "w", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        if mindrecord:
            from ..backends.mindformers.bridge import call_mindspore

            ids, labels = eval_rows(items, tokenizer, max_length)
            with tempfile.TemporaryDirectory(prefix="tunebridge-squad-") as scratch:
                np.savez(Path(scratch) / "rows.npz", input_ids=ids, labels=labels)
                call_mindspore(
                    "backends.mindformers.ms.mindrecord",
                    "write",
                    npz_path=str(Path(scratch) / "rows.npz"),
                    out_path=str((tmp / "squad_eval.mindrecord").resolve()),
                )
    return {"paragraphs": len(items), "questions_used": len(items)}
