"""``tunebridge data``: prepare a recipe's data for each backend, or convert one file."""

from __future__ import annotations

import itertools
from pathlib import Path

from ..backends.stacks import STACK_NAMES, STACKS
from ..data.readers import RECORD_FORMATS, check_map_keys
from ..data.templates import PREPROCESS, TEMPLATES
from ..data.tokenizer import TOKENIZER_RULES
from ..errors import TunebridgeError
from ..io.atomic import atomic_dir, check_output, output_lock
from .args import json_object, positive_int
from .tables import console, table


def register(sub) -> None:
    p = sub.add_parser("data", help="prepare or convert instruction data for each stack")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    pr = dsub.add_parser("prepare", help="a recipe's data.train for one or all backends")
    pr.add_argument("recipe", help="recipe YAML with a data section")
    pr.add_argument("--backend", choices=(*STACK_NAMES, "all"), default="all", help="one backend's files, or all")
    pr.add_argument("--out", required=True, help="output directory (refused if it exists, unless --force)")
    pr.add_argument(
        "--workers", type=positive_int, default=1, help="tokenizer processes (output is identical for any N)"
    )
    pr.add_argument(
        "--tokenizer",
        help="the model's HF tokenizer directory (default: the recipe's data.tokenizer, "
        "else its model.weights; the embedded one only for the tiny models)",
    )
    pr.add_argument("--force", action="store_true", help="replace an existing output directory")
    pr.set_defaults(func=run_prepare)

    cv = dsub.add_parser("convert", help="one data file to megatron / mindrecord / jsonl")
    cv.add_argument("input", help="data file: .json (array), .jsonl, .csv or .parquet")
    cv.add_argument("out", help="output directory (refused if it exists, unless --force)")
    cv.add_argument("--reader", choices=RECORD_FORMATS, default="alpaca", help="record format (default alpaca)")
    cv.add_argument(
        "--map-keys",
        type=json_object,
        help='JSON, e.g. {"prompt": "zh_instruction", "query": "zh_input", "response": "zh_output"}',
    )
    cv.add_argument("--template", choices=tuple(TEMPLATES), required=True, help="prompt template")
    cv.add_argument("--tokenizer", help="HF tokenizer directory (default: the embedded one)")
    cv.add_argument(
        "--preprocess",
        choices=PREPROCESS,
        default="per-stack",
        help="whose preprocessing makes the samples (per-stack: the template's stack, MindFormers' "
        "llama_preprocess.py for vicuna_v1.1, else MindSpeed-LLM's preprocess_data.py)",
    )
    cv.add_argument(
        "--tokenizer-rules",
        choices=TOKENIZER_RULES,
        default="transformers-4",
        help="tokenize as MindSpeed-LLM's transformers does: 4.57.1 (MindSpeed-LLM 2.3.0) or 5.x (master)",
    )
    cv.add_argument(
        "--seq-length",
        type=positive_int,
        required=True,
        help="jsonl / megatron: samples of this many tokens or more are dropped and counted (qwen_lf: "
        "cut to seq-length - 1); mindrecord: rows of seq-length + 1 tokens, longer samples cut",
    )
    cv.add_argument("--to", choices=tuple(s.data for s in STACKS.values()), required=True, help="output format")
    cv.add_argument(
        "--workers", type=positive_int, default=1, help="tokenizer processes (output is identical for any N)"
    )
    cv.add_argument("--force", action="store_true", help="replace an existing output directory")
    cv.set_defaults(func=run_convert)

    sq = dsub.add_parser(
        "squad",
        help="the SQuAD v1.1 retention set (first question per paragraph) as JSONL + MindFormers' squad mindrecord",
    )
    sq.add_argument("input", help="SQuAD v1.1 JSON (e.g. dev-v1.1.json)")
    sq.add_argument("out", help="output directory (refused if it exists, unless --force)")
    sq.add_argument("--seq-length", type=positive_int, default=8192, help="MindFormers' row length (squad8192: 8192)")
    sq.add_argument("--tokenizer", help="HF tokenizer directory (default: the embedded one)")
    sq.add_argument("--no-mindrecord", action="store_true", help="only the JSONL")
    sq.add_argument("--force", action="store_true", help="replace an existing output directory")
    sq.set_defaults(func=run_squad)


def run_prepare(args) -> int:
    from ..data.prepare import prepare
    from ..recipe.schema import load_recipe

    recipe = load_recipe(args.recipe)
    backends = list(STACK_NAMES) if args.backend == "all" else [args.backend]
    with output_lock(check_output(args.out, args.force)):  # refused or claimed before any tokenizing
        report = prepare(recipe, backends, args.out, force=args.force, workers=args.workers, tokenizer=args.tokenizer)
    _summary(report)
    print(f"wrote {args.out} (summary.json lists every file)")
    return 0


def run_convert(args) -> int:
    from tqdm import tqdm

    from ..data.prepare import Encoding, PrepareReport, write, writer
    from ..data.readers import read_records

    if args.map_keys is not None:
        try:
            check_map_keys(args.map_keys, args.reader)
        except TunebridgeError as e:
            raise TunebridgeError(f"--map-keys: {e}") from None
    check_output(args.out, args.force)
    report = PrepareReport()
    encoding = Encoding(
        template=args.template,
        seq_length=args.seq_length,
        tokenizer=args.tokenizer,
        preprocess=args.preprocess,
        tokenizer_rules=args.tokenizer_rules,
        record_format=args.reader,
    )

    def counted(records):
        for r in records:
            report.read += 1
            yield r

    records = read_records(args.input, args.reader, args.map_keys)
    first = next(records, None)
    if first is None:
        raise TunebridgeError(f"{args.input}: no records")
    with tqdm(desc="convert", unit="record") as bar, atomic_dir(args.out, force=args.force) as tmp:
        records = counted(bar_iter(itertools.chain([first], records), bar))
        out = writer(args.to, tmp, Path(args.input).stem, encoding)
        counts = write(records, encoding, {args.to: out}, args.workers)[args.to]
    report.train = report.read
    report.written[args.to], report.too_long[args.to] = counts.written, counts.too_long
    _summary(report)
    for f in out.paths:
        print(f"wrote {Path(args.out) / f.name}")
    return 0


def run_squad(args) -> int:
    from ..data.squad import write_squad_eval
    from ..data.tokenizer import load_tokenizer

    check_output(args.out, args.force)
    info = write_squad_eval(
        args.input,
        args.out,
        load_tokenizer(args.tokenizer),
        args.seq_length,
        force=args.force,
        mindrecord=not args.no_mindrecord,
    )
    print(f"wrote {args.out}: {info['paragraphs']} paragraphs, the first question of each")
    return 0


def bar_iter(items, bar):
    for item in items:
        bar.update(1)
        yield item


def _summary(r) -> None:
    t = table("data", {"step": "left", "kept": "right", "changed": "right", "dropped": "right"})
    t.add_row("read", str(r.read), "", "")
    for s in r.transforms:
        t.add_row(s.name, str(s.kept), str(s.changed), str(s.dropped))
    t.add_row("train / validation", f"{r.train} / {r.validation}", "", "")
    for k, n in r.written.items():
        t.add_row(f"written {k}", str(n), "", f"{r.too_long[k]} at or over seq_length")
    console().print(t)
