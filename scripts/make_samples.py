"""Write the small sample data sets in the seeds' formats (own text, deterministic) to data/samples/.

    .venv/bin/python scripts/make_samples.py

- seed001_conversations.json: MindFormers' converted Alpaca conversations with the Alpaca boilerplate,
  300 arithmetic records (the first 240 asked in Chinese, the last 60 in English; all four operators)
- seed002_math_ranked.jsonl: problem / solution / difficulty (0-5), numbers with up to 6 decimals
- seed003_alpaca_zh.json: alpaca-chinese style (en_/zh_ instruction, input, output, metadata)
- seed004_math.jsonl: problem / solution as in the contest's test_128.json
- squad_dev_sample.json: SQuAD v1.1 layout, 24 paragraphs of two questions each
"""
from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "data" / "samples"
BOILERPLATE = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction:\n")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


def _problem(rng: random.Random, chinese: bool, decimals: int = 2) -> tuple[str, str, str]:
    a, b = round(rng.uniform(-9999, 9999), decimals), round(rng.uniform(-9999, 9999), decimals)
    op = rng.choice(list(OPS))
    value = OPS[op](a, b)
    question = f"计算 {a} {op} {b} 等于多少？" if chinese else f"What is {a} {op} {b}?"
    return question, f"{value:.{max(decimals, 4) if op in '*/' else decimals}f}".rstrip("0").rstrip("."), op


def seed001(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(300):
        q, a, _ = _problem(rng, chinese=i < 240)
        rows.append({"id": f"s001-{i}", "conversations": [{"from": "human", "value": BOILERPLATE + q + "\n\n### Response:"},
                                                          {"from": "gpt", "value": a}]})
    return rows


def seed002(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(400):
        q, a, op = _problem(rng, chinese=rng.random() < 0.8, decimals=rng.choice([2, 3, 4, 6]))
        rows.append({"problem": q, "solution": a, "difficulty": {"+": 1, "-": 2, "*": 3, "/": 4}[op]
                     if rng.random() > 0.1 else rng.choice([0, 5])})
    return rows


def seed003(rng: random.Random) -> list[dict]:
    topics = [("staying healthy", "保持健康"), ("saving water", "节约用水"), ("learning maths", "学习数学"),
              ("reading books", "阅读书籍"), ("sleeping well", "睡个好觉")]
    rows = []
    for i in range(200):
        en, zh = topics[i % len(topics)]
        n = 2 + i % 3
        rows.append({"en_instruction": f"Give {n} tips for {en}.", "en_input": "" if i % 4 else f"Audience #{i}",
                     "en_output": " ".join(f"{k + 1}. Tip {k + 1} about {en}." for k in range(n)),
                     "zh_instruction": f"给出{n}个关于{zh}的建议。", "zh_input": "" if i % 4 else f"读者 #{i}",
                     "zh_output": "\n".join(f"{k + 1}. 关于{zh}的第{k + 1}条建议。" for k in range(n)),
                     "metadata": {"translated": True, "score": 1 + i % 5}})
    return rows


def seed004(rng: random.Random) -> list[dict]:
    return [dict(zip(("problem", "solution"), _problem(rng, chinese=rng.random() < 0.7)[:2])) for _ in range(300)]


def squad(rng: random.Random) -> dict:
    cities = ["Lanzhou", "Harbin", "Kunming", "Xiamen", "Guilin", "Dalian", "Luoyang", "Suzhou"]
    rivers = ["Yellow River", "Songhua River", "Pearl River", "Min River"]
    articles = []
    for a in range(4):
        paragraphs = []
        for p in range(6):
            city, river, year = rng.choice(cities), rng.choice(rivers), rng.randint(1900, 2020)
            context = (f"The museum of {city} opened in {year}. It stands near the {river} and holds "
                       f"{rng.randint(2, 90)} halls. Visitors from {rng.choice(cities)} often arrive by train.")
            paragraphs.append({"context": context, "qas": [
                {"id": f"q{a}{p}0", "question": f"When did the museum of {city} open?",
                 "answers": [{"text": str(year), "answer_start": context.index(str(year))},
                             {"text": f"in {year}", "answer_start": context.index(f"in {year}")}]},
                {"id": f"q{a}{p}1", "question": f"Which river is the museum near?",
                 "answers": [{"text": f"the {river}", "answer_start": context.index(f"the {river}")}]}]})
        articles.append({"title": f"Museums {a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2024)
    (OUT / "seed001_conversations.json").write_text(json.dumps(seed001(rng), ensure_ascii=False, indent=1) + "\n")
    (OUT / "seed002_math_ranked.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed002(rng)))
    (OUT / "seed003_alpaca_zh.json").write_text(json.dumps(seed003(rng), ensure_ascii=False, indent=1) + "\n")
    (OUT / "seed004_math.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seed004(rng)))
    (OUT / "squad_dev_sample.json").write_text(json.dumps(squad(rng), ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
