"""C-Eval, MMLU and CMMLU: their file layouts, MindSpeed-LLM's prompts, two answer protocols, four averages.

Layouts (the benchmarks' own releases, as MindSpeed-LLM 2.3.0's evaluation reads them):

- C-Eval: ``val/<subject>_val.csv`` scored, ``dev/<subject>_dev.csv`` for shots; a header row
  ``id,question,A,B,C,D,answer`` (dev files also carry ``explanation``, ignored).
- MMLU: ``test/<subject>_test.csv`` (or ``val/<subject>_val.csv``), ``dev/<subject>_dev.csv``; no header,
  six fields ``question,A,B,C,D,answer``.
- CMMLU: ``test/<subject>.csv``, ``dev/<subject>.csv``; a header ``,Question,A,B,C,D,Answer`` whose first,
  unnamed column is a row index (MindSpeed-LLM skips the header row and lets pandas take that column as
  the index). Header names are matched case-insensitively.

Prompts follow MindSpeed-LLM's default path (no ``--prompt-type``): a per-subject 5-shot text, then the
question. MindSpeed-LLM ships those 5-shot texts as fixed JSON files written from each benchmark's dev
split; tunebridge writes them from the first ``shots`` rows of the subject's dev file, in file order, in
the same shape:

- C-Eval: ``请从下列选择题中选择正确的选项。`` + per shot ``\\n\\n问：{q}\\nA. ..\\nD. ..\\n答：{X}``, then
  ``\\n\\n问：{q}\\nA. ..\\nD. ..\\n答：``.
- MMLU: ``The following are multiple choice questions (with answers) about  {subject}.`` (two spaces, as
  in the original MMLU prompt) + per shot ``\\n{q}\\nA. ..\\nD. ..\\nAnswer: {X}``, then
  ``\\n\\n{q}\\nA. ..\\nD. ..\\nAnswer:``.
- CMMLU: ``以下是中国关于{科目}考试的单项选择题，请选出其中的正确答案。\\n`` + per shot
  ``{q}\\nA. ..\\nD. ..\\n答案： {X}\\n``, then ``\\n\\n{q}\\nA. ..\\nD. ..\\n答案： ``.

Protocols:

- ``generate``: greedy decoding; the prediction is the first character of the stripped output when it is
  one of A-D, else no answer (counted, scored wrong). MindSpeed-LLM compares the whole stripped output
  with the letter (C-Eval) or matches a leading letter (MMLU); with a one-token answer they agree.
- ``loglik``: argmax over the four options of log p(letter | prompt), the letter written as the prompt
  leaves it: ``" A"`` after MMLU's ``Answer:``, ``"A"`` after C-Eval's ``答：`` and CMMLU's ``答案： ``.
  Ties go to the earlier letter.

Averages: per subject; per category both pooled over its questions ("micro") and the mean of its subjects
("macro"); overall micro (pooled over all questions: MindSpeed-LLM's "total") and macro (mean over subjects).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import TunebridgeError, unknown

LETTERS = ("A", "B", "C", "D")
PROTOCOLS = {
    "generate": "first character of the stripped greedy output (A-D, else no answer)",
    "loglik": "argmax over A-D of log p(option letter | prompt), ties to the earlier letter",
}
UNCATEGORIZED = "uncategorized"


@dataclass(frozen=True)
class Question:
    subject: str
    id: str
    question: str
    options: tuple[str, str, str, str]
    answer: str
    source: str  # "file:line", for error messages and predictions


@dataclass(frozen=True)
class Item:
    """One question as a model sees it."""

    question: Question
    prompt: str
    letter_prefix: str  # what precedes the letter in a log-likelihood continuation


def options_of(texts: Iterable[str]) -> tuple[str, str, str, str]:
    """A question's four option texts, in LETTERS order."""
    a, b, c, d = texts
    return a, b, c, d


# --- reading -------------------------------------------------------------------------------------------


def _decoded(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TunebridgeError(f"{path}:{line}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of each non-empty CSV record."""
    reader = csv.reader(io.StringIO(_decoded(path), newline=""))
    rows, start = [], 1
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise TunebridgeError(f"{path}:{reader.line_num}: malformed CSV: {e}") from None
    return rows


def _question(path: Path, line: int, subject: str, qid: str, fields: dict[str, str]) -> Question:
    answer = fields["answer"].strip()
    if answer not in LETTERS:
        raise TunebridgeError(f"{path}:{line}: answer {fields['answer']!r} is not one of A, B, C, D")
    return Question(subject, qid, fields["question"], options_of(fields[k] for k in LETTERS), answer, f"{path}:{line}")


def _read_with_header(path: Path, subject: str, id_column: str | None) -> list[Question]:
    rows = _csv_rows(path)
    if not rows:
        raise TunebridgeError(f"{path}: empty file (expected a header row)")
    _, header = rows[0]
    names = [h.strip().lower() for h in header]
    for column in ("question", *[x.lower() for x in LETTERS], "answer"):
        if column not in names:
            raise TunebridgeError(f"{path}:1: missing column {column!r} (header has: {', '.join(header)})")
    at = {name: i for i, name in enumerate(names) if name}
    out = []
    for n, (line, fields) in enumerate(rows[1:], 1):
        if len(fields) != len(header):
            raise TunebridgeError(f"{path}:{line}: {len(fields)} fields, the header has {len(header)}")
        by_name = {k: fields[at[k.lower()]] for k in ("question", *LETTERS, "answer")}
        qid = (
            fields[at[id_column]].strip()
            if id_column and id_column in at
            else (fields[0].strip() if not names[0] else str(n - 1))
        )
        out.append(_question(path, line, subject, qid, by_name))
    return out


def _read_headerless(path: Path, subject: str) -> list[Question]:
    out = []
    for n, (line, fields) in enumerate(_csv_rows(path)):
        if len(fields) != 6:
            raise TunebridgeError(
                f"{path}:{line}: {len(fields)} fields, expected 6 (question,A,B,C,D,answer; MMLU files have no header)"
            )
        out.append(_question(path, line, subject, str(n), dict(zip(("question", *LETTERS, "answer"), fields))))
    return out


# --- the three benchmarks -----------------------------------------------------------------------------


def _options(q: Question) -> str:
    return "".join(f"\n{letter}. {text}" for letter, text in zip(LETTERS, q.options))


# Each benchmark's prompt is header + one text per shot + the question's tail (which starts "\n\n"), the
# shape of MindSpeed-LLM's shipped 5-shot texts followed by its instruction template.


def _ceval_header(subject: str) -> str:
    return "请从下列选择题中选择正确的选项。"


def _ceval_shot(q: Question) -> str:
    return f"\n\n问：{q.question}{_options(q)}\n答：{q.answer}"


def _ceval_tail(q: Question) -> str:
    return f"\n\n问：{q.question}{_options(q)}\n答："


def _mmlu_header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about  {subject.replace('_', ' ')}."


def _mmlu_shot(q: Question) -> str:
    return f"\n{q.question}{_options(q)}\nAnswer: {q.answer}"


def _mmlu_tail(q: Question) -> str:
    return f"\n\n{q.question}{_options(q)}\nAnswer:"


def _cmmlu_header(subject: str) -> str:
    name = CMMLU_SUBJECTS_ZH.get(subject, subject.replace("_", " "))
    return f"以下是中国关于{name}考试的单项选择题，请选出其中的正确答案。\n "


def _cmmlu_shot(q: Question) -> str:
    return f"{q.question}{_options(q)}\n答案： {q.answer}\n"


def _cmmlu_tail(q: Question) -> str:
    return f"\n\n{q.question}{_options(q)}\n答案： "


@dataclass(frozen=True)
class Benchmark:
    name: str
    splits: tuple[str, ...]  # scored split directories, in order of preference
    eval_suffix: Callable[[str], str]  # split -> file name suffix after the subject
    dev_suffix: str
    read: Callable[[Path, str], list[Question]]
    header: Callable[[str], str]  # subject -> the prompt's first line(s)
    shot: Callable[[Question], str]  # one solved example
    tail: Callable[[Question], str]  # the question asked
    letter_prefix: str
    categories: dict[str, str]
    category_names: tuple[str, ...]

    def shots_text(self, subject: str, shots: Sequence[Question]) -> str:
        return self.header(subject) + "".join(self.shot(s) for s in shots)

    def subject_of(self, file: Path, split: str) -> str | None:
        suffix = self.eval_suffix(split) + ".csv"
        return file.name[: -len(suffix)] if file.name.endswith(suffix) and len(file.name) > len(suffix) else None


# C-Eval's subject_mapping.json: 52 subjects in four categories.
CEVAL_CATEGORIES = {
    s: c
    for c, subjects in {
        "STEM": "computer_network operating_system computer_architecture college_programming college_physics "
        "college_chemistry advanced_mathematics probability_and_statistics discrete_mathematics "
        "electrical_engineer metrology_engineer high_school_mathematics high_school_physics "
        "high_school_chemistry high_school_biology middle_school_mathematics middle_school_biology "
        "middle_school_physics middle_school_chemistry veterinary_medicine",
        "Social Science": "college_economics business_administration marxism mao_zedong_thought education_science "
        "teacher_qualification high_school_politics high_school_geography middle_school_politics "
        "middle_school_geography",
        "Humanities": "modern_chinese_history ideological_and_moral_cultivation logic law "
        "chinese_language_and_literature art_studies professional_tour_guide legal_professional "
        "high_school_chinese high_school_history middle_school_history",
        "Other": "civil_servant sports_science plant_protection basic_medicine clinical_medicine "
        "urban_and_rural_planner accountant fire_engineer environmental_impact_assessment_engineer "
        "tax_accountant physician",
    }.items()
    for s in subjects.split()
}

# MMLU's categories (Hendrycks et al., categories.py): 57 subjects in four categories.
MMLU_CATEGORIES = {
    s: c
    for c, subjects in {
        "STEM": "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
        "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
        "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
        "high_school_mathematics high_school_physics high_school_statistics machine_learning",
        "humanities": "formal_logic high_school_european_history high_school_us_history high_school_world_history "
        "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy "
        "prehistory professional_law world_religions",
        "social sciences": "econometrics high_school_geography high_school_government_and_politics "
        "high_school_macroeconomics high_school_microeconomics high_school_psychology "
        "human_sexuality professional_psychology public_relations security_studies sociology "
        "us_foreign_policy",
        "other (business, health, misc.)": "anatomy business_ethics clinical_knowledge college_medicine global_facts "
        "human_aging management marketing medical_genetics miscellaneous nutrition "
        "professional_accounting professional_medicine virology",
    }.items()
    for s in subjects.split()
}

# CMMLU's 67 subjects: the Chinese name its prompts use (MindSpeed-LLM's cmmlu_subject_mapping.json, CMMLU's
# name_en2zh) and the category of the subject's first sub-category (CMMLU's categories.py; its fifth group,
# "China specific", overlaps the others and is not reported).
CMMLU_SUBJECTS_ZH = dict(
    pair.split(":")
    for pair in """
agronomy:农学 anatomy:解剖学 ancient_chinese:古汉语 arts:艺术学 astronomy:天文学 business_ethics:商业伦理
chinese_civil_service_exam:中国公务员考试 chinese_driving_rule:中国驾驶规则 chinese_food_culture:中国饮食文化
chinese_foreign_policy:中国外交政策 chinese_history:中国历史 chinese_literature:中国文学
chinese_teacher_qualification:中国教师资格 college_actuarial_science:大学精算学 college_education:大学教育学
college_engineering_hydrology:大学工程水文学 college_law:大学法律 college_mathematics:大学数学
college_medical_statistics:大学医学统计 clinical_knowledge:临床知识 college_medicine:大学医学
computer_science:计算机科学 computer_security:计算机安全 conceptual_physics:概念物理学
construction_project_management:建设工程管理 economics:经济学 education:教育学 elementary_chinese:小学语文
elementary_commonsense:小学常识 elementary_information_and_technology:小学信息技术 electrical_engineering:电气工程
elementary_mathematics:初等数学 ethnology:民族学 food_science:食品科学 genetics:遗传学 global_facts:全球事实
high_school_biology:高中生物 high_school_chemistry:高中化学 high_school_geography:高中地理
high_school_mathematics:高中数学 high_school_physics:高中物理学 high_school_politics:高中政治
human_sexuality:人类性行为 international_law:国际法学 journalism:新闻学 jurisprudence:法理学
legal_and_moral_basis:法律与道德基础 logical:逻辑学 machine_learning:机器学习 management:管理学 marketing:市场营销
marxist_theory:马克思主义理论 modern_chinese:现代汉语 nutrition:营养学 philosophy:哲学 professional_accounting:专业会计
professional_law:专业法学 professional_medicine:专业医学 professional_psychology:专业心理学 public_relations:公共关系
security_study:安全研究 sociology:社会学 sports_science:体育学 traditional_chinese_medicine:中医中药 virology:病毒学
world_history:世界历史 world_religions:世界宗教""".split()
)
CMMLU_CATEGORIES = {
    s: c
    for c, subjects in {
        "STEM": "anatomy astronomy college_actuarial_science college_engineering_hydrology college_mathematics "
        "college_medical_statistics computer_science conceptual_physics electrical_engineering "
        "elementary_mathematics genetics high_school_biology high_school_chemistry high_school_mathematics "
        "high_school_physics machine_learning virology",
        "Humanities": "arts chinese_history chinese_literature college_law global_facts international_law jurisprudence "
        "logical marxist_theory philosophy professional_law world_history world_religions",
        "Social Science": "ancient_chinese business_ethics chinese_civil_service_exam chinese_food_culture "
        "chinese_foreign_policy chinese_teacher_qualification college_education economics education "
        "elementary_chinese ethnology high_school_geography high_school_politics journalism "
        "management marketing modern_chinese professional_accounting professional_psychology "
        "public_relations security_study sociology",
        "Other": "agronomy chinese_driving_rule clinical_knowledge college_medicine computer_security "
        "construction_project_management elementary_commonsense elementary_information_and_technology "
        "food_science human_sexuality legal_and_moral_basis nutrition professional_medicine sports_science "
        "traditional_chinese_medicine",
    }.items()
    for s in subjects.split()
}

BENCHMARKS = {
    "ceval": Benchmark(
        "ceval",
        ("val",),
        lambda split: f"_{split}",
        "_dev",
        lambda p, s: _read_with_header(p, s, "id"),
        _ceval_header,
        _ceval_shot,
        _ceval_tail,
        "",
        CEVAL_CATEGORIES,
        ("STEM", "Social Science", "Humanities", "Other"),
    ),
    "mmlu": Benchmark(
        "mmlu",
        ("test", "val"),
        lambda split: f"_{split}",
        "_dev",
        _read_headerless,
        _mmlu_header,
        _mmlu_shot,
        _mmlu_tail,
        " ",
        MMLU_CATEGORIES,
        ("STEM", "humanities", "social sciences", "other (business, health, misc.)"),
    ),
    "cmmlu": Benchmark(
        "cmmlu",
        ("test",),
        lambda split: "",
        "",
        lambda p, s: _read_with_header(p, s, None),
        _cmmlu_header,
        _cmmlu_shot,
        _cmmlu_tail,
        "",
        CMMLU_CATEGORIES,
        ("STEM", "Humanities", "Social Science", "Other"),
    ),
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise TunebridgeError(unknown("multiple-choice task", name, BENCHMARKS))
    return BENCHMARKS[name]


def _split_dir(bench: Benchmark, path: Path) -> tuple[Path, str]:
    """The scored split directory: ``path`` itself (as MindSpeed-LLM's --task-data-path) or its split child."""
    if path.name in bench.splits and path.is_dir():
        return path, path.name
    for split in bench.splits:
        if (path / split).is_dir():
            return path / split, split
    raise TunebridgeError(
        f"{path}: not a {bench.name} directory (expected it, or a child of it, to be one of: "
        f"{', '.join(bench.splits)}, next to dev/)"
    )


Reader = Callable[["Benchmark", Path, str], list[Question]]


def load_items(
    task: str,
    path: str | Path,
    shots: int = 5,
    limit: int | None = None,
    read: Reader | None = None,
    shipped: dict[str, str] | None = None,
) -> list[Item]:
    """Every question of every subject under ``path`` with its prompt; ``limit`` keeps the first N per subject.

    ``read`` reads a file (default: the benchmark's own strict reader); ``shipped`` (subject -> text) gives each
    subject's shot text as it is, instead of writing it from the first ``shots`` rows of its dev file."""
    bench = benchmark(task)
    read = read or (lambda b, file, subject: b.read(file, subject))
    split_dir, split = _split_dir(bench, Path(path))
    files = sorted((f, subject) for f in split_dir.glob("*.csv") if (subject := bench.subject_of(f, split)))
    if not files:
        raise TunebridgeError(f"{split_dir}: no <subject>{bench.eval_suffix(split)}.csv files")
    items = []
    for file, subject in files:
        questions = read(bench, file, subject)
        if not questions:
            raise TunebridgeError(f"{file}: no questions")
        if shipped is not None:
            if subject not in shipped:
                raise TunebridgeError(
                    f"{file}: the few-shot file has no text for subject {subject!r} "
                    f"(MindSpeed-LLM would skip the subject)"
                )
            head = shipped[subject]
        else:
            support: list[Question] = []
            if shots:
                dev = split_dir.parent / "dev" / f"{subject}{bench.dev_suffix}.csv"
                if not dev.exists():
                    raise TunebridgeError(
                        f"{dev}: no such dev file (needed for {shots}-shot prompts of {subject}; "
                        f"pass --shots 0 to go without)"
                    )
                support = read(bench, dev, subject)[:shots]
            head = bench.shots_text(subject, support)
        for q in questions[:limit]:
            items.append(Item(q, head + bench.tail(q), bench.letter_prefix))
    return items


# --- predictions and averages -------------------------------------------------------------------------


def letter_of(output: str) -> str | None:
    """The generate protocol's answer: the first character of the stripped output, if it is A-D."""
    text = output.strip()
    return text[0] if text and text[0] in LETTERS else None


def best_letter(logprobs: Sequence[float]) -> str:
    if len(logprobs) != len(LETTERS):
        raise TunebridgeError(f"{len(logprobs)} option log-likelihoods, expected {len(LETTERS)}")
    return LETTERS[max(range(len(LETTERS)), key=lambda i: (logprobs[i], -i))]


def _accuracy(correct: int, total: int) -> float:
    return correct / total


def averages(task: str, questions: Sequence[Question], predictions: Sequence[str | None]) -> dict:
    """Per-subject, per-category (micro and macro), overall micro and macro accuracy, each labelled."""
    if len(questions) != len(predictions):
        raise TunebridgeError(f"{len(predictions)} predictions for {len(questions)} questions")
    if not questions:
        raise TunebridgeError("no questions to score")
    bench = benchmark(task)
    subjects: dict[str, dict] = {}
    for q, p in zip(questions, predictions):
        s = subjects.setdefault(
            q.subject,
            {"category": bench.categories.get(q.subject, UNCATEGORIZED), "correct": 0, "total": 0, "no_answer": 0},
        )
        s["total"] += 1
        s["correct"] += int(p == q.answer)
        s["no_answer"] += int(p is None)
    for s in subjects.values():
        s["accuracy"] = _accuracy(s["correct"], s["total"])
    categories: dict[str, dict] = {}
    for name, s in sorted(subjects.items()):
        c = categories.setdefault(s["category"], {"subjects": [], "correct": 0, "total": 0})
        c["subjects"].append(name)
        c["correct"] += s["correct"]
        c["total"] += s["total"]
    for c in categories.values():
        c["accuracy_micro"] = _accuracy(c["correct"], c["total"])
        c["accuracy_macro"] = sum(subjects[s]["accuracy"] for s in c["subjects"]) / len(c["subjects"])
    correct = sum(s["correct"] for s in subjects.values())
    order = {name: i for i, name in enumerate((*bench.category_names, UNCATEGORIZED))}
    return {
        "count": len(questions),
        "correct": correct,
        "no_answer": sum(s["no_answer"] for s in subjects.values()),
        "micro_average": _accuracy(correct, len(questions)),
        "macro_average": sum(s["accuracy"] for s in subjects.values()) / len(subjects),
        "averages_rule": {
            "micro_average": "correct / questions, pooled over all subjects (MindSpeed-LLM's total)",
            "macro_average": "mean of the subjects' accuracies",
            "accuracy_micro": "category: pooled over its questions",
            "accuracy_macro": "category: mean of its subjects' accuracies",
        },
        "categories": dict(sorted(categories.items(), key=lambda kv: order.get(kv[0], len(order)))),
        "subjects": dict(sorted(subjects.items())),
    }


def option_pairs(item: Item) -> list[tuple[str, str]]:
    """The four (context, continuation) pairs of the loglik protocol."""
    return [(item.prompt, item.letter_prefix + letter) for letter in LETTERS]
