"""Pre-train the embedded tiny base model (tunebridge/assets/tiny-base/) and write the demo's math data.

    .venv/bin/python scripts/make_tiny_base.py [--steps N]

The model is the catalogue's ``tiny-llama`` (GQA, 4 layers, hidden 64, the embedded 512-id tokenizer),
pre-trained from a fixed seed on the project's own synthetic text:

- arithmetic facts, written as ``17 + 5 = 22.`` (small integers, + and -);
- reading comprehension in MindFormers' SQuAD prompt (tunebridge.data.squad.PROMPT) over passages about
  the museums of a fixed set of cities (each with its own opening year and river; the other details vary).

A model this small does not learn to copy an answer out of an arbitrary passage, so the facts are fixed:
the base model answers the demo's SQuAD set (data/samples/demo_squad.json, written here) from what it
learnt, as a large model answers from its knowledge, and the retention check has a real baseline to lose.
It knows sums but has never seen the instruction template the demo fine-tunes with: LoRA on the demo's
instruction math data (data/samples/demo_math_{train,test}.jsonl, written here too) visibly moves math
accuracy.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tunebridge.model.catalogue import get_model  # noqa: E402
from tunebridge.data.tokenizer import load_tokenizer  # noqa: E402
from tunebridge.data.squad import PROMPT  # noqa: E402

OUT = REPO / "tunebridge" / "assets" / "tiny-base"
SAMPLES = REPO / "data" / "samples"
CITIES = ["Lanzhou", "Harbin", "Kunming", "Xiamen", "Guilin", "Dalian", "Luoyang", "Suzhou", "Wuhan", "Xining",
          "Nanjing", "Hefei", "Jinan", "Lhasa", "Ningbo", "Zhuhai"]
RIVERS = ["Yellow River", "Songhua River", "Pearl River", "Min River"]
_FACTS = random.Random(3)
MUSEUMS = {city: (_FACTS.randint(1900, 2020), _FACTS.choice(RIVERS)) for city in CITIES}
MAX_OPERAND = 20


def arithmetic(rng: random.Random) -> str:
    a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
    if rng.random() < 0.5:
        return f"{a} + {b} = {a + b}."
    a, b = max(a, b), min(a, b)
    return f"{a} - {b} = {a - b}."


def passage(city: str, rng: random.Random) -> str:
    year, river = MUSEUMS[city]
    return (f"The museum of {city} opened in {year}. It stands near the {river} and holds "
            f"{rng.randint(2, 90)} halls. Visitors from {rng.choice(CITIES)} often arrive by train.")


def questions(city: str) -> list[tuple[str, str]]:
    year, river = MUSEUMS[city]
    return [(f"When did the museum of {city} open?", str(year)),
            (f"Which river is the museum of {city} near?", f"the {river}")]


def reading(rng: random.Random) -> str:
    city = rng.choice(CITIES)
    question, answer = rng.choice(questions(city))
    return PROMPT.format(context=passage(city, rng), question=question) + " " + answer


def squad_set(rng: random.Random) -> dict:
    """SQuAD v1.1 layout: one paragraph per city, its questions with the answer spans."""
    paragraphs = []
    for i, city in enumerate(CITIES):
        context = passage(city, rng)
        qas = [{"id": f"demo{i:02d}{k}", "question": q,
                "answers": [{"text": a, "answer_start": context.index(a)}]}
               for k, (q, a) in enumerate(questions(city))]
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "Museums", "paragraphs": paragraphs}]}


def math_records(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        if rng.random() < 0.5:
            rows.append({"problem": f"What is {a} + {b}?", "solution": str(a + b)})
        else:
            a, b = max(a, b), min(a, b)
            rows.append({"problem": f"What is {a} - {b}?", "solution": str(a - b)})
    return rows


def batches(tok, rng: random.Random, batch: int, seq: int):
    eos = tok.eos_token_id
    buffer: list[int] = []
    while True:
        while len(buffer) < batch * (seq + 1):
            text = arithmetic(rng) if rng.random() < 0.5 else reading(rng)
            buffer += tok.encode(text, add_special_tokens=False) + [eos]
        chunk, buffer = buffer[:batch * (seq + 1)], buffer[batch * (seq + 1):]
        yield torch.tensor(chunk).view(batch, seq + 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # late in training, denormal moments make CPU steps 20x slower
    from transformers import AutoConfig, AutoModelForCausalLM
    spec = get_model("tiny-llama")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**spec.to_hf_config()))
    tok = load_tokenizer(None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=args.steps, pct_start=0.05)
    rng = random.Random(7)
    started = time.time()
    model.train()
    for step, chunk in zip(range(args.steps), batches(tok, rng, args.batch, 128)):
        logits = model(input_ids=chunk[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.time() - started:.0f} s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out), safe_serialization=True)
    data_rng = random.Random(11)
    for name, n in (("demo_math_train.jsonl", 320), ("demo_math_test.jsonl", 64)):
        rows = math_records(data_rng, n)
        (SAMPLES / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (SAMPLES / "demo_squad.json").write_text(json.dumps(squad_set(data_rng), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} and {SAMPLES}/demo_math_{{train,test}}.jsonl, demo_squad.json")


if __name__ == "__main__":
    main()
