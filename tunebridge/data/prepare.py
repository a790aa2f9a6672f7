"""From records to each backend's training files: transforms, template, tokenizer, writer, with counts."""
from __future__ import annotations

import json
import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path
from itertools import islice
from typing import Iterable, Iterator

from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import TunebridgeError
from ..stacks import get_stack
from .encode import Sample, alpaca_query, encode, load_tokenizer, pad_id
from .readers import Record, read_records
from .templates import Template, get_template
from .transforms import TransformReport, apply, split
from .writers import write_jsonl, write_megatron, write_mindrecord


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


# worker state: each process loads the tokenizer once
_WORKER: dict = {}


def _init_worker(tokenizer: str | None, template: str, system: str | None, mask: str) -> None:
    _WORKER.update(tok=load_tokenizer(tokenizer), template=get_template(template), system=system, mask=mask)


def _encode_chunk(chunk: list[tuple[str, str, str | None, tuple, str]]) -> list[Sample]:
    tok, template, mask = _WORKER["tok"], _WORKER["template"], _WORKER["mask"]
    out = []
    for q, a, s, history, where in chunk:
        try:
            out.append(encode(tok, template, q, a, s if s is not None else _WORKER["system"], history, mask))
        except TunebridgeError as e:
            raise TunebridgeError(f"{where}: {e}") from None
    return out


def tokenize_stream(records: Iterable[Record], tokenizer: str | None, template: Template, system: str | None = None,
                    workers: int = 1, chunk: int = 512, mask: str = "tunebridge") -> Iterator[Sample]:
    """Samples in record order, whatever the number of worker processes; records are consumed lazily."""
    items = ((alpaca_query(r.prompt, r.query), r.response, r.system, r.history, r.where) for r in records)
    chunks = iter(lambda: list(islice(items, chunk)), [])
    if workers <= 1:
        _init_worker(tokenizer, template.name, system, mask)
        for part in map(_encode_chunk, chunks):
            yield from part
        return
    with mp.get_context("spawn").Pool(workers, _init_worker, (tokenizer, template.name, system, mask)) as pool:
        for part in pool.imap(_encode_chunk, chunks):
            yield from part


def tokenize(records: list[Record], tokenizer: str | None, template: Template, system: str | None = None,
             workers: int = 1, progress: bool = True, mask: str = "tunebridge") -> list[Sample]:
    samples = tokenize_stream(tqdm(records, desc="tokenize", unit="sample", disable=not progress, leave=False),
                              tokenizer, template, system, workers, mask=mask)
    return list(samples)


def write(kind: str, out: Path, name: str, samples: Iterable[Sample], seq_length: int, pad_id: int) -> tuple:
    if kind == "jsonl":
        path = out / f"{name}.jsonl"
        return write_jsonl(path, samples, seq_length), [path]
    if kind == "megatron":
        from .writers import megatron_files
        return write_megatron(out / name, samples, seq_length), megatron_files(out / name)
    if kind == "mindrecord":
        path = out / f"{name}.mindrecord"
        return write_mindrecord(path, samples, seq_length, pad_id), [path, Path(f"{path}.db")]
    raise TunebridgeError(f"unknown output {kind!r} (jsonl, megatron, mindrecord)")


def prepare(recipe, backends: list[str], out: str | Path, force: bool = False, workers: int = 1,
            progress: bool = True, tokenizer: str | None = None) -> PrepareReport:
    """The recipe's data for ``backends``, in ``out`` (one file set per backend), with a summary.json;
    ``tokenizer`` overrides the recipe's (:meth:`tunebridge.recipe.Recipe.tokenizer`)."""
    from ..render import default_prompt_type
    d = recipe.data
    if d is None or d.train is None:
        raise TunebridgeError(f"{recipe.source}: the recipe has no data.train section")
    base = recipe.source.parent if recipe.source else Path(".")
    path = base / d.train.path
    tokenizer_path, tok = recipe.load_tokenizer(tokenizer)
    tokenizer = str(tokenizer_path) if tokenizer_path else None
    report = PrepareReport()
    records = list(read_records(path, d.train.format, d.train.map_keys))
    if not records:
        raise TunebridgeError(f"{path}: no records")
    report.read = len(records)
    records, report.transforms = apply(records, d.transforms, recipe.train.seed)
    train, val = split(records, d.validation_split, recipe.train.seed)
    report.train, report.validation = len(train), len(val)
    template = get_template(d.template or default_prompt_type(recipe))
    pad = pad_id(tok)
    mask = d.mask
    sets = {"train": tokenize(train, tokenizer, template, d.system, workers, progress=progress, mask=mask)}
    if val:
        sets["validation"] = tokenize(val, tokenizer, template, d.system, workers, progress=progress, mask=mask)
    with atomic_dir(out, force=force) as tmp:
        for backend in backends:
            kind = get_stack(backend).data
            (tmp / backend).mkdir()
            for name, samples in sets.items():
                counts, files = write(kind, tmp / backend, name, samples, recipe.train.seq_length, pad)
                report.written[f"{backend}/{name}"] = counts.written
                report.too_long[f"{backend}/{name}"] = counts.too_long
                report.files[f"{backend}/{name}"] = [str(Path(out) / backend / f.name) for f in files]
        (tmp / "summary.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return report
