"""From records to each backend's training files: transforms, the stacks' preprocessing, writers, with counts.

Which stack's preprocessing makes the samples (``preprocess``):

- ``per-stack`` (default): the samples of the stack whose template it is. MindSpeed-LLM's preprocess_data.py
  (encode.py) for its templates, in every format; MindFormers' alpaca_converter.py + llama_preprocess.py
  (mindformers.py) for vicuna_v1.1, the only template its converter writes and one MindSpeed-LLM does not have.
- ``mindspeed-llm`` / ``mindformers``: that stack's samples in every format.

Lengths follow the format's stack: Megatron and JSONL drop samples of seq_length tokens or more (MindSpeed-LLM),
MindRecord rows hold seq_length + 1 tokens and longer samples are cut (MindFormers). ``aligned`` (training runs
that compare the stacks) gives MindRecord the drop rule too, so that every format holds the same samples.

Records are encoded in chunks, by worker processes when ``workers`` > 1; a worker returns each format's
:class:`Rows`, so the main process only reads records and writes bytes. The output is the same for any number of
workers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

from tqdm import tqdm

from ..backends.stacks import get_stack
from ..errors import TunebridgeError
from ..io.atomic import atomic_dir
from . import mindformers
from .encode import Sample, cut, encode_turns, flatten, user_turn
from .readers import Record, read_records
from .templates import PREPROCESS, TEMPLATES, get_template, preprocessing_stack
from .tokenizer import TOKENIZER_RULES, load_tokenizer, row_pad_id
from .transforms import TransformReport, apply, split
from .writers import JsonlWriter, MegatronWriter, MindRecordWriter, Rows, WriteCounts, Writer


@dataclass(frozen=True)
class Encoding:
    """How records become samples."""

    template: str
    seq_length: int
    tokenizer: str | None = None  # a tokenizer directory; None: the embedded one
    system: str | None = None  # replaces the template's default system prompt
    preprocess: str = "per-stack"
    tokenizer_rules: str = "transformers-4"  # the transformers MindSpeed-LLM pins (2.3.0: 4.57.1; master: 5.2.0)
    record_format: str = "alpaca"
    aligned: bool = False

    def __post_init__(self):
        template = get_template(self.template)
        if self.preprocess not in PREPROCESS:
            raise TunebridgeError(f"unknown preprocess {self.preprocess!r} (known: {', '.join(PREPROCESS)})")
        if self.tokenizer_rules not in TOKENIZER_RULES:
            raise TunebridgeError(
                f"unknown tokenizer rules {self.tokenizer_rules!r} (known: {', '.join(TOKENIZER_RULES)})"
            )
        if self.preprocess == "mindformers" and template.stack != "mindformers":
            own = ", ".join(t.name for t in TEMPLATES.values() if t.stack == "mindformers")
            raise TunebridgeError(
                f"preprocess 'mindformers' is MindFormers' llama_preprocess.py, which writes "
                f"{own} conversations, not template {self.template!r}"
            )

    @property
    def stack(self) -> str:
        """The stack whose preprocessing makes the samples."""
        return preprocessing_stack(get_template(self.template), self.preprocess)

    def load_tokenizer(self):
        return load_tokenizer(self.tokenizer, "mindformers" if self.stack == "mindformers" else self.tokenizer_rules)


@dataclass
class PrepareReport:
    read: int = 0
    transforms: list[TransformReport] = field(default_factory=list)
    train: int = 0
    validation: int = 0
    written: dict[str, int] = field(default_factory=dict)
    too_long: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _Encoder:
    """Records to each requested format's samples: one encoding, fitted to each format's length rule."""

    def __init__(self, encoding: Encoding, kinds: tuple[str, ...]):
        self.encoding, self.kinds = encoding, kinds
        self.template = get_template(encoding.template)
        self.tokenizer = encoding.load_tokenizer()
        self.memo: dict = {}

    def chunk(self, items: list[tuple]) -> list[Rows]:
        per_kind: list[list[Sample | None]] = [[] for _ in self.kinds]
        for item in items:
            try:
                turns = self._turns(item)
                for samples, kind in zip(per_kind, self.kinds):
                    samples.append(self._fit(kind, turns))
            except TunebridgeError as e:
                raise TunebridgeError(f"{item[-1]}: {e}") from None
        return [Rows.of(s) for s in per_kind]

    def _turns(self, item: tuple) -> list:
        """MindFormers: the conversation's (user, assistant) texts; MindSpeed-LLM: each turn's ids, not cut."""
        prompt, query, response, system, history, _ = item
        e = self.encoding
        if e.stack == "mindformers":
            if e.record_format == "alpaca":
                return [(mindformers.alpaca_human_turn(prompt, query), response)]
            return [*history, (user_turn(prompt, query), response)]
        return encode_turns(
            self.tokenizer,
            self.template,
            [*history, (user_turn(prompt, query), response)],
            system or e.system,
            self.memo,
        )

    def _fit(self, kind: str, turns: list) -> Sample | None:
        e = self.encoding
        keep_long = kind == "mindrecord" and not e.aligned  # MindFormers' rows: cut to seq_length + 1, kept
        if e.stack == "mindformers":
            sample = mindformers.row(self.tokenizer, turns, e.seq_length + 1 if keep_long else None, e.system)
        elif keep_long:
            whole = flatten(turns)
            sample = Sample(whole.input_ids[: e.seq_length + 1], whole.labels[: e.seq_length + 1])
        else:
            sample = flatten(cut(turns, self.template, e.seq_length))
        return sample if keep_long or len(sample.input_ids) < e.seq_length else None


_WORKER: dict = {}


def _init_worker(encoding: Encoding, kinds: tuple[str, ...]) -> None:
    _WORKER["encoder"] = _Encoder(encoding, kinds)


def _encode_chunk(items: list[tuple]) -> list[Rows]:
    return _WORKER["encoder"].chunk(items)


def _item(r: Record) -> tuple:
    return r.prompt, r.query, r.response, r.system, r.history, r.where


def encode_records(
    records: Iterable[Record], encoding: Encoding, kinds: tuple[str, ...], workers: int = 1, chunk: int = 256
) -> Iterable[list[Rows]]:
    """Each chunk of records as one :class:`Rows` per format in ``kinds``, in record order, for any ``workers``."""
    items = map(_item, records)
    chunks = iter(lambda: list(islice(items, chunk)), [])
    if workers <= 1:
        encoder = _Encoder(encoding, kinds)
        yield from map(encoder.chunk, chunks)
        return
    with mp.get_context("spawn").Pool(workers, _init_worker, (encoding, kinds)) as pool:
        yield from pool.imap(_encode_chunk, chunks)


def writer(kind: str, out: Path, name: str, encoding: Encoding) -> Writer:
    """The writer of format ``kind`` for file set ``name`` in ``out``."""
    if kind == "jsonl":
        return JsonlWriter(out / f"{name}.jsonl", encoding.seq_length)
    if kind == "megatron":
        return MegatronWriter(out / name, encoding.seq_length)
    if kind == "mindrecord":
        pad = row_pad_id(encoding.load_tokenizer())
        return MindRecordWriter(out / f"{name}.mindrecord", encoding.seq_length, pad)
    raise TunebridgeError(f"unknown output {kind!r} (jsonl, megatron, mindrecord)")


def write(
    records: Iterable[Record], encoding: Encoding, writers: dict[str, Writer], workers: int = 1
) -> dict[str, WriteCounts]:
    """``records`` through every writer (by format), from one encoding; on failure no file is left behind."""
    kinds = tuple(writers)
    batches = encode_records(records, encoding, kinds, workers)
    try:
        for rows in batches:
            for kind, r in zip(kinds, rows):
                writers[kind].add(r)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    counts: dict[str, WriteCounts] = {}
    try:
        for kind, w in writers.items():
            counts[kind] = w.close()
    except BaseException:
        for kind, w in writers.items():
            if kind not in counts:
                w.abort()
        raise
    return counts


def recipe_encoding(recipe, aligned: bool = False, tokenizer: str | None = None) -> Encoding:
    """How the recipe's data is encoded; ``tokenizer`` overrides the recipe's
    (:meth:`tunebridge.recipe.schema.Recipe.load_tokenizer`, which refuses one with more ids than the model)."""
    from ..backends.render import default_prompt_type

    d = recipe.data
    path, _ = recipe.load_tokenizer(tokenizer)
    return Encoding(
        template=d.template or default_prompt_type(recipe),
        seq_length=recipe.train.seq_length,
        tokenizer=str(path) if path else None,
        system=d.system,
        preprocess=d.preprocess,
        tokenizer_rules=d.tokenizer_rules,
        record_format=d.train.format,
        aligned=aligned,
    )


def prepare(
    recipe,
    backends: list[str],
    out: str | Path,
    force: bool = False,
    workers: int = 1,
    progress: bool = True,
    aligned: bool = False,
    tokenizer: str | None = None,
) -> PrepareReport:
    """The recipe's data for ``backends``, in ``out`` (one file set per backend), with a summary.json;
    ``tokenizer`` overrides the recipe's (:func:`recipe_encoding`)."""
    d = recipe.data
    if d is None or d.train is None:
        raise TunebridgeError(f"{recipe.source}: the recipe has no data.train section")
    encoding = recipe_encoding(recipe, aligned, tokenizer)
    report = PrepareReport()
    path = recipe.path(d.train.path)
    records = list(read_records(path, d.train.format, d.train.map_keys))
    if not records:
        raise TunebridgeError(f"{path}: no records")
    report.read = len(records)
    records, report.transforms = apply(records, d.transforms, recipe.train.seed)
    train, val = split(records, d.validation_split, recipe.train.seed)
    report.train, report.validation = len(train), len(val)
    with atomic_dir(out, force=force) as tmp:
        for name, part in (("train", train), ("validation", val)):
            if not part:
                continue
            for backend in backends:
                (tmp / backend).mkdir(exist_ok=True)
            writers = {get_stack(b).data: writer(get_stack(b).data, tmp / b, name, encoding) for b in backends}
            with tqdm(part, desc=f"encode {name}", unit="record", disable=not progress, leave=False) as bar:
                counts = write(bar, encoding, writers, workers)
            for backend in backends:
                kind = get_stack(backend).data
                key = f"{backend}/{name}"
                report.written[key], report.too_long[key] = counts[kind].written, counts[kind].too_long
                report.files[key] = [str(Path(out) / backend / p.name) for p in writers[kind].paths]
        (tmp / "summary.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report
