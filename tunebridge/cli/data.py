"""``tunebridge data``: prepare a recipe's data for each backend, or convert one file."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from ..accounting import BACKENDS
from ..atomic import atomic_dir
from ..data.encode import load_tokenizer
from ..data.prepare import OUTPUTS, PREPROCESS, TOKENIZER_RULES, Encoding, PrepareReport, prepare, write, writer
from ..data.readers import RECORD_FORMATS, read_records
from ..data.templates import TEMPLATES
from ..errors import TunebridgeError
from ..recipe import load_recipe


def register(sub) -> None:
    p = sub.add_parser("data", help="prepare or convert instruction data for each stack")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    pr = dsub.add_parser("prepare", help="a recipe's data.train for one or all backends")
    pr.add_argument("recipe")
    pr.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    pr.add_argument("--out", required=True)
    pr.add_argument("--workers", type=int, default=1, help="tokenizer processes (output is identical for any N)")
    pr.add_argument("--force", action="store_true")
    pr.set_defaults(func=run_prepare)

    cv = dsub.add_parser("convert", help="one data file to megatron / mindrecord / jsonl")
    cv.add_argument("input")
    cv.add_argument("out", help="output directory")
    cv.add_argument("--reader", choices=RECORD_FORMATS, default="alpaca")
    cv.add_argument("--map-keys", help='JSON, e.g. {"prompt": "zh_instruction", "query": "zh_input", '
                                       '"response": "zh_output"}')
    cv.add_argument("--template", choices=tuple(TEMPLATES), required=True)
    cv.add_argument("--tokenizer", help="HF tokenizer directory (default: the embedded one)")
    cv.add_argument("--preprocess", choices=PREPROCESS, default="per-stack",
                    help="whose preprocessing makes the samples (per-stack: the template's stack, MindFormers' "
                         "llama_preprocess.py for vicuna_v1.1, else MindSpeed-LLM's preprocess_data.py)")
    cv.add_argument("--tokenizer-rules", choices=TOKENIZER_RULES, default="transformers-4",
                    help="tokenize as MindSpeed-LLM's transformers does: 4.57.1 (MindSpeed-LLM 2.3.0) or 5.x (master)")
    cv.add_argument("--seq-length", type=int, required=True)
    cv.add_argument("--to", choices=tuple(sorted(set(OUTPUTS.values()))), required=True)
    cv.add_argument("--workers", type=int, default=1)
    cv.add_argument("--force", action="store_true")
    cv.set_defaults(func=run_convert)

    sq = dsub.add_parser("squad", help="the SQuAD v1.1 retention set (first question per paragraph) as JSONL + "
                                       "MindFormers' squad mindrecord")
    sq.add_argument("input", help="SQuAD v1.1 JSON (e.g. dev-v1.1.json)")
    sq.add_argument("out")
    sq.add_argument("--seq-length", type=int, default=8192, help="MindFormers' row length (squad8192: 8192)")
    sq.add_argument("--tokenizer", help="HF tokenizer directory (default: the embedded one)")
    sq.add_argument("--no-mindrecord", action="store_true", help="only the JSONL")
    sq.add_argument("--force", action="store_true")
    sq.set_defaults(func=run_squad)


def run_prepare(args) -> int:
    recipe = load_recipe(args.recipe)
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    report = prepare(recipe, backends, args.out, force=args.force, workers=args.workers)
    _summary(report)
    print(f"wrote {args.out} (summary.json lists every file)")
    return 0


def run_convert(args) -> int:
    try:
        map_keys = json.loads(args.map_keys) if args.map_keys else None
    except json.JSONDecodeError as e:
        raise TunebridgeError(f"--map-keys: not JSON ({e.msg})") from None
    report = PrepareReport()
    encoding = Encoding(template=args.template, seq_length=args.seq_length, tokenizer=args.tokenizer,
                        preprocess=args.preprocess, tokenizer_rules=args.tokenizer_rules, record_format=args.reader)

    def counted(records):
        for r in records:
            report.read += 1
            yield r
    bar = tqdm(desc="convert", unit="record")
    records = counted(bar_iter(read_records(args.input, args.reader, map_keys), bar))
    with atomic_dir(args.out, force=args.force) as tmp:
        out = writer(args.to, tmp, Path(args.input).stem, encoding)
        counts = write(records, encoding, {args.to: out}, args.workers)[args.to]
    bar.close()
    report.train = report.read
    report.written[args.to], report.too_long[args.to] = counts.written, counts.too_long
    _summary(report)
    for f in out.paths:
        print(f"wrote {Path(args.out) / f.name}")
    return 0


def run_squad(args) -> int:
    from ..data.squad import write_squad_eval
    info = write_squad_eval(args.input, args.out, load_tokenizer(args.tokenizer), args.seq_length, force=args.force,
                            mindrecord=not args.no_mindrecord)
    print(f"wrote {args.out}: {info['paragraphs']} paragraphs, the first question of each")
    return 0


def bar_iter(items, bar):
    for item in items:
        bar.update(1)
        yield item


def _summary(r: PrepareReport) -> None:
    t = Table(title="data")
    for col in ("step", "kept", "changed", "dropped"):
        t.add_column(col, justify="left" if col == "step" else "right")
    t.add_row("read", str(r.read), "", "")
    for s in r.transforms:
        t.add_row(s.name, str(s.kept), str(s.changed), str(s.dropped))
    t.add_row("train / validation", f"{r.train} / {r.validation}", "", "")
    for k, n in r.written.items():
        t.add_row(f"written {k}", str(n), "", f"{r.too_long[k]} at or over seq_length")
    Console(width=120).print(t)
