"""Streaming checkpoint conversion between HF, Megatron-mcore (MindSpeed-LLM) and MindFormers.

Every format is read as *canonical* tensors (``spec.tensors()``: embed, per-layer q k v o ... , final
norm, lm_head) and written from them, one tensor or one layer at a time: fused mcore tensors are
read into their canonical parts when first asked for (or, for an HF target, handed over as slices of
the rank files' records), and an mcore target is written all TP ranks of a stage at once. Tensor bytes
go from the source's page cache to the output with as few copies as the layout allows (file ranges
copied in the kernel, mapped ranges, views, positioned I/O), and a writer thread writes while the next
tensor is read. Peak memory is about one layer plus the writer's queue (``Background``), whatever the
model size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import TunebridgeError
from ..io.atomic import atomic_dir
from ..model import layout as tensor_layout
from ..model.dialects import HF, MCORE, MINDFORMERS, Dialect, Pack, Shard, TensorRule
from ..model.families import mindformers_model
from ..model.layout import padded_vocab_size, row_plan, unpack_shards
from ..model.partition import Layout, ep_problem, local_expert, tp_problem
from ..model.spec import ModelSpec
from .formats import DTYPE_NAMES, HF_CONFIG, MF_CKPT, checkpoint_format, mcore as mcore_fmt, msckpt
from .formats.background import Background
from .formats.hf import GENERATION_CONFIG, HFReader, write_hf
from .formats.mapped import FileRange, byte_range
from .formats.safetensors_stream import tensor_bytes
from .formats.torchzip import lazy_load

DTYPES = dict(zip(DTYPE_NAMES, (torch.float32, torch.bfloat16, torch.float16)))


class Source:
    """Canonical tensors of a checkpoint, fetched lazily."""

    spec: ModelSpec
    generation_config: dict | None = None  # the source directory's generation_config.json, carried to HF outputs

    def get(self, part: str, layer: int | None) -> torch.Tensor:
        raise NotImplementedError

    def dtype(self) -> torch.dtype:
        return self.get("final_norm", None).dtype

    def pieces(self, part: str, layer: int | None, dtype: torch.dtype) -> Sequence[memoryview | FileRange] | None:
        """The canonical tensor's row-major bytes as ``dtype``, as buffers to write in order, when the
        source has them without assembling the tensor; else None (then :meth:`get` it)."""
        return None

    def finish(self) -> None:
        """Wait for checks still running on bytes handed out; raise the first failure."""


Locate = Callable[[str], "tuple[torch.dtype, tuple[int, ...], list[FileRange]] | None"]


class FlatSource(Source):
    """A dialect with one framework tensor per canonical tensor (HF, MindFormers). ``locate`` tells where a
    tensor's bytes are in its file (None where they are not stored as they are), for :meth:`pieces`."""

    def __init__(
        self,
        spec: ModelSpec,
        dialect: Dialect,
        fetch: Callable[[str], torch.Tensor],
        where: str,
        locate: Locate | None = None,
    ):
        self.spec, self._dialect, self._fetch, self._where, self._locate = spec, dialect, fetch, where, locate

    def _check_shape(self, name: str, part: str, shape: tuple[int, ...], per_expert: bool = False) -> None:
        needed = self.spec.shape(part)[1:] if per_expert else self.spec.shape(part)
        if tuple(shape) != needed:
            raise TunebridgeError(
                f"{self._where}: {name} has shape {list(shape)}, {self.spec.name} needs {list(needed)}"
            )

    def get(self, part: str, layer: int | None) -> torch.Tensor:
        rule = self._dialect.rule_for_part(part, self.spec)
        if rule.per_expert:  # one tensor per expert, stacked
            experts = []
            for name in rule.names(layer, range(self.spec.num_experts)):
                experts.append(self._fetch(name))
                self._check_shape(name, part, tuple(experts[-1].shape), per_expert=True)
            return torch.stack(experts)
        name = rule.format(layer)
        t = self._fetch(name)
        self._check_shape(name, part, tuple(t.shape))
        return t

    def pieces(self, part: str, layer: int | None, dtype: torch.dtype) -> list[FileRange] | None:
        rule = self._dialect.rule_for_part(part, self.spec)
        if self._locate is None:
            return None
        out: list[FileRange] = []
        for name in rule.names(layer, range(self.spec.num_experts)):  # a stack of experts: theirs in order
            found = self._locate(name)
            if found is None:
                return None
            stored, shape, ranges = found
            self._check_shape(name, part, shape, rule.per_expert)
            if stored != dtype:
                return None
            out += ranges
        return out


class McoreSource(Source):
    """An mcore checkpoint: fused tensors merged over TP and unpacked, vocab padding stripped. To an HF
    target it hands :meth:`pieces`: file ranges of the rank files' records, which the writer copies file
    to file, CRC-checked by a thread per rank file meanwhile; only a row-parallel tensor split over TP is
    assembled in memory (its rows interleave the ranks' rows)."""

    def __init__(self, root: str | Path, spec: ModelSpec | None = None, num_layer_list: list[int] | None = None):
        self.layout = mcore_fmt.McoreLayout(root)
        first = lazy_load(self.layout.file(0, 0))
        args = first.get("args")
        if spec is None:
            if args is None:
                raise TunebridgeError(f"{self.layout.file(0, 0)}: no args saved: pass the model (--model/--hf-config)")
            spec = mcore_fmt.spec_from_args(args, Path(root).name)
        num_layer_list = num_layer_list or mcore_fmt.saved_layer_list(args)
        self.spec = spec
        self.stages = mcore_fmt.stages(spec, self.layout.pp, num_layer_list)
        self._loaded: dict[tuple[int, int, int], dict] = {(0, 0, 0): first}
        self._unpacked: dict[str, list[torch.Tensor]] = {}
        self._mapped: dict[str, list[list] | None] = {}
        self._checks: list[Background] = []

    def _model(self, tp_rank: int, stage: int, ep_rank: int = 0) -> dict:
        """The rank file's state dict of lazy tensors (only the pickle is read, once)."""
        if (tp_rank, stage, ep_rank) not in self._loaded:
            self._loaded[(tp_rank, stage, ep_rank)] = lazy_load(self.layout.file(tp_rank, stage, ep_rank))
        saved = self._loaded[(tp_rank, stage, ep_rank)]
        if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
            raise TunebridgeError(f"{self.layout.file(tp_rank, stage, ep_rank)}: no 'model' state dict")
        return saved["model"]

    def _place(self, part: str, layer: int | None) -> tuple[TensorRule, int, int | None]:
        """The mcore rule holding ``part``, the stage holding ``layer`` and its stage-local index."""
        rule = MCORE.rule_for_part(part, self.spec)
        if layer is None:
            return rule, (0 if part == "embed" else self.layout.pp - 1), None
        stage = next(s for s, r in enumerate(self.stages) if layer in r)
        return rule, stage, self.stages[stage].index(layer)

    def _shards(self, part: str, layer: int | None, expert: int | None = None) -> tuple[TensorRule, str, list]:
        """The mcore rule holding ``part``, its tensor's name and that tensor's TP shards (lazy); ``expert``:
        which expert's tensor, from the ep rank holding it (other tensors: ep rank 0's copy)."""
        rule, stage, local = self._place(part, layer)
        ep_rank = 0
        if expert is not None:
            ep_rank, expert = local_expert(self.spec, expert, self.layout.ep)
        name = rule.format(local, expert)
        states = [self._model(t, stage, ep_rank) for t in range(self.layout.tp)]
        module, _, leaf = name.rpartition(".")
        wrapped = f"{module}.base_layer.{leaf}"  # a LoRA-wrapped checkpoint keeps its base weights here
        key = name if name in states[0] else wrapped
        missing = [t for t, st in enumerate(states) if key not in st]
        if missing:
            raise TunebridgeError(f"{self.layout.file(missing[0], stage, ep_rank)}: tensor {name} is missing")
        return rule, f"{stage}:{ep_rank}:{name}", [st[key] for st in states]

    def _expert_parts(self, rule: TensorRule, layer: int) -> list[torch.Tensor]:
        """The canonical parts of a per-expert rule in ``layer``: every expert's, stacked, from its ep rank."""
        experts = [
            unpack_shards(rule, [s.load() for s in self._shards(rule.parts[0], layer, e)[2]], self.spec)
            for e in range(self.spec.num_experts)
        ]
        return [torch.stack([parts[j] for parts in experts]) for j in range(len(rule.parts))]

    def _rows(self, rule: TensorRule, shards: list) -> list[int]:
        """Row counts of the canonical parts (vocab still padded)."""
        if rule.pack is not Pack.NONE:
            return [self.spec.shape(p)[0] for p in rule.parts]
        return [sum(s.size[0] for s in shards) if rule.shard is not Shard.REPLICATED else shards[0].size[0]]

    def _read_parts(self, rule: TensorRule, shards: list) -> list[torch.Tensor]:
        """The canonical parts (vocab still padded) of the fused tensor whose TP shards are ``shards``:
        read straight into place when each shard is a run of the parts' rows, else unpacked from the shards."""
        first = shards[0]
        tp = len(shards)
        rows = self._rows(rule, shards)
        plan = row_plan(rule, self.spec, tp, rows, [s.size[0] for s in shards]) if first.size else None
        if plan is None or not all(
            s.is_whole_storage() and s.size[1:] == first.size[1:] and s.storage.dtype == first.storage.dtype
            for s in shards
        ):
            return unpack_shards(rule, [s.load() for s in shards], self.spec)
        parts = [torch.empty((n, *first.size[1:]), dtype=first.storage.dtype) for n in rows]
        jobs = [
            (shard, [tensor_bytes(parts[j][a : a + n]) for j, a, n in blocks]) for shard, blocks in zip(shards, plan)
        ]
        if tp == 1:
            first.read_into(jobs[0][1])
        else:  # one thread per rank file: reads and CRCs release the GIL
            with ThreadPoolExecutor(tp) as pool:
                list(pool.map(lambda job: job[0].read_into(job[1]), jobs))
        return parts

    def get(self, part: str, layer: int | None) -> torch.Tensor:
        if layer is not None and (rule := MCORE.rule_for_part(part, self.spec)).per_expert:
            key = f"{layer}:{rule.name}"
            if key not in self._unpacked:
                self._unpacked = {key: self._expert_parts(rule, layer)}
            return self._checked_shape(part, key, self._unpacked[key][rule.parts.index(part)])
        rule, key, shards = self._shards(part, layer)
        if key not in self._unpacked:
            parts = self._read_parts(rule, shards)
            if rule.shard is Shard.VOCAB:
                parts = [p[: self.spec.vocab_size] for p in parts]
            # canonical tensors are asked for in order (q, k, v together): keep only the fused tensor in use
            self._unpacked = {key: parts}
        return self._checked_shape(part, key, self._unpacked[key][rule.parts.index(part)])

    def _checked_shape(self, part: str, key: str, t: torch.Tensor) -> torch.Tensor:
        if tuple(t.shape) != self.spec.shape(part):
            raise TunebridgeError(
                f"{self.layout.root}: {key.rpartition(':')[2]} gives {part} of shape "
                f"{list(t.shape)}, {self.spec.name} needs {list(self.spec.shape(part))}"
            )
        return t

    def dtype(self) -> torch.dtype:
        return self._shards("final_norm", None)[2][0].storage.dtype

    def pieces(self, part: str, layer: int | None, dtype: torch.dtype) -> list[memoryview | FileRange] | None:
        if MCORE.rule_for_part(part, self.spec).per_expert:
            return None  # experts are assembled by get
        rule, key, shards = self._shards(part, layer)
        if key not in self._mapped:
            self._mapped = {key: self._map_parts(rule, shards, dtype)}
        parts = self._mapped[key]
        return None if parts is None else parts[rule.parts.index(part)]

    def _map_parts(self, rule: TensorRule, shards: list, dtype: torch.dtype) -> list[list] | None:
        """Each canonical part's bytes as file ranges of the shards' records (a row-parallel tensor over
        TP: assembled from the mapped records, as one writev per row would cost more than the copy), or
        None where the layout is not plain rows of whole records. Each record's CRC is checked on its
        rank's thread."""
        first = shards[0]
        tp = len(shards)
        if len(first.size) == 0 or not all(
            s.is_whole_storage() and s.size[1:] == first.size[1:] and s.storage.dtype == dtype for s in shards
        ):
            return None
        row_bytes = math.prod(first.size[1:]) * dtype.itemsize
        if rule.shard is Shard.ROW and tp > 1:
            if len(first.size) < 2 or any(s.size != first.size for s in shards):
                return None
            shape = (first.size[0], first.size[1] * tp, *first.size[2:])
            if shape != self.spec.shape(rule.parts[0]):
                return None
            views = [
                np.frombuffer(s.map_unchecked(), np.uint8).reshape(first.size[0], row_bytes)
                for s in self._checked(shards)
            ]
            return [[np.concatenate(views, axis=1).data.cast("B")]]
        rows = self._rows(rule, shards)
        plan = row_plan(rule, self.spec, tp, rows, [s.size[0] for s in shards])
        assert plan is not None, "row_plan gives None only for a row-parallel split over tp > 1, handled above"
        canonical = [(n, *first.size[1:]) for n in rows]
        if any(sum(n for _, _, n in blocks) != s.size[0] for s, blocks in zip(shards, plan)) or any(
            shape[1:] != self.spec.shape(p)[1:] for shape, p in zip(canonical, rule.parts)
        ):
            return None
        ranges = [s.range_unchecked() for s in self._checked(shards)]
        blocks: list[list[tuple[int, FileRange]]] = [[] for _ in rows]
        for whole, rank_blocks in zip(ranges[:1] if rule.shard is Shard.REPLICATED else ranges, plan):
            at = 0
            for j, a, n in rank_blocks:
                blocks[j].append((a, whole[at : at + n * row_bytes]))
                at += n * row_bytes
        parts = [[r for _, r in sorted(b, key=lambda item: item[0])] for b in blocks]
        if rule.shard is Shard.VOCAB:
            parts = [byte_range(p, 0, self.spec.vocab_size * row_bytes) for p in parts]
        if any(
            sum(r.nbytes for r in p) != dtype.itemsize * math.prod(self.spec.shape(name))
            for p, name in zip(parts, rule.parts)
        ):
            return None
        return parts

    def _checked(self, shards: list) -> list:
        """``shards``, each queued for the CRC check of its record on its rank's thread."""
        if not self._checks:  # one thread per rank file; the CRC-32 releases the GIL
            self._checks = [Background(max_bytes=1 << 30) for _ in shards]
        for check, shard in zip(self._checks, shards):
            check.submit(shard.check, shard.storage.numel * shard.storage.dtype.itemsize)
        return shards

    def finish(self) -> None:
        checks, self._checks = self._checks, []
        for check in checks:
            check.close()


def open_source(
    path: str | Path, fmt: str, spec: ModelSpec | None = None, num_layer_list: list[int] | None = None
) -> Source:
    """The canonical tensors of the checkpoint at ``path`` in format ``fmt`` (a :data:`formats.CHECKPOINTS` name)."""
    path = Path(path)
    reader = checkpoint_format(fmt).load("reader")
    if not path.exists():
        raise TunebridgeError(f"{path}: no such checkpoint")
    source = reader(path, spec, num_layer_list)
    generation = path / GENERATION_CONFIG
    if generation.is_file():
        try:
            source.generation_config = json.loads(generation.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TunebridgeError(f"{generation}: not valid JSON ({e})") from None
    return source


def open_hf(path: Path, spec: ModelSpec | None, num_layer_list: list[int] | None = None) -> Source:
    reader = HFReader(path, spec)
    return FlatSource(reader.spec, HF, reader.get, str(path), reader.locate)


def open_mindformers(path: Path, spec: ModelSpec | None, num_layer_list: list[int] | None = None) -> Source:
    ckpt = path
    if path.is_dir():
        found = sorted(path.glob("*.ckpt"))
        if len(found) != 1:
            raise TunebridgeError(f"{path}: expected one .ckpt file, found {len(found)}")
        ckpt = found[0]
        if spec is None and (path / HF_CONFIG).exists():
            spec = ModelSpec.from_hf_config(path)
    if spec is None:
        raise TunebridgeError(f"{ckpt}: a MindFormers .ckpt carries no model config: pass --model or --hf-config")
    mindformers_model(spec)
    reader = msckpt.CkptReader(ckpt)
    return FlatSource(spec, MINDFORMERS, reader.get, str(ckpt), reader.locate)


def mcore_layout(path: Path, source: McoreSource) -> dict:
    """The writer options that give a checkpoint the TP/PP layout of the mcore checkpoint at ``path``."""
    layout = mcore_fmt.McoreLayout(path)
    return {
        "tp": layout.tp,
        "pp": layout.pp,
        "ep": layout.ep,
        "num_layer_list": [len(r) for r in source.stages] if layout.pp > 1 else None,
    }


def _flat_tensors(source: Source, dialect: Dialect, dtype: torch.dtype | None):
    """(name, tensor or the pieces of its bytes) in ``spec.tensors()`` order."""
    spec = source.spec
    out_dtype = dtype or source.dtype()
    for part, layer in spec.tensors():
        rule = dialect.rule_for_part(part, spec)
        if rule.per_expert:  # one framework tensor per expert: the rows of the stacked canonical tensor
            t = source.get(part, layer)
            for e, name in enumerate(rule.names(layer, range(spec.num_experts))):
                yield name, (t[e].to(dtype) if dtype else t[e]).contiguous()
            continue
        name = rule.format(layer)
        pieces = source.pieces(part, layer, out_dtype)
        if pieces is not None:
            yield name, pieces
            continue
        t = source.get(part, layer)
        yield name, (t.to(dtype) if dtype else t).contiguous()


def _flat_entries(spec: ModelSpec, dialect: Dialect, dtype: torch.dtype) -> list[tuple[str, torch.dtype, tuple]]:
    """(name, dtype, shape) of every tensor :func:`_flat_tensors` yields, in its order."""
    entries = []
    for part, layer in spec.tensors():
        rule = dialect.rule_for_part(part, spec)
        shape = spec.shape(part)[1:] if rule.per_expert else spec.shape(part)
        entries += [(name, dtype, shape) for name in rule.names(layer, range(spec.num_experts))]
    return entries


class Writer:
    """Writes a source's canonical tensors in one format. Made before anything is written, so that a model or
    layout the format cannot hold is refused first; ``total`` is the number of tensors ``write`` counts."""

    def __init__(self, spec: ModelSpec, layout: Layout):
        self.spec, self.layout = spec, layout
        self.total = sum(1 for _ in spec.tensors())

    def write(self, out: Path, source: Source, dtype: torch.dtype | None, bar: tqdm) -> None:
        raise NotImplementedError


class HFWriter(Writer):
    """An HF directory; tensor bytes the source has as file ranges are copied file to file."""

    def __init__(self, spec: ModelSpec, layout: Layout):
        super().__init__(spec, layout)
        self.total = len(_flat_entries(spec, HF, torch.float32))

    def write(self, out, source, dtype, bar):
        spec = source.spec
        out_dtype = dtype or source.dtype()
        entries = _flat_entries(spec, HF, out_dtype)
        with Background() as background:
            write_hf(
                out,
                spec,
                entries,
                _counted(_flat_tensors(source, HF, dtype), bar),
                self.layout.max_shard_bytes,
                background,
                source.generation_config,
            )


class MindFormersWriter(Writer):
    """A MindFormers ``.ckpt`` (byte-identical to ``mindspore.save_checkpoint``) beside the model's HF config."""

    def __init__(self, spec: ModelSpec, layout: Layout):
        super().__init__(spec, layout)
        mindformers_model(spec)  # a family MindFormers cannot run is refused, saying why

    def write(self, out, source, dtype, bar):
        spec = source.spec
        (out / HF_CONFIG).write_text(json.dumps(spec.to_hf_config(), indent=2) + "\n", encoding="utf-8")
        dtype_name = str(dtype or source.dtype()).removeprefix("torch.")
        tensors = _counted(_flat_tensors(source, MINDFORMERS, dtype), bar)
        with open(out / MF_CKPT, "wb") as f, Background() as background:
            writer = msckpt.CkptWriter(f, background)
            for (part, _), (name, t) in zip(spec.tensors(), tensors):
                if isinstance(t, torch.Tensor):
                    writer.write(name, list(t.shape), str(t.dtype).removeprefix("torch."), tensor_bytes(t))
                else:
                    writer.write(name, list(spec.shape(part)), dtype_name, t)
        msckpt.finish_readonly(out / MF_CKPT)


def _counted(items, bar: tqdm):
    """``items``, each counted as it is handed to the writer (the consumer stops asking after the last one)."""
    for item in items:
        bar.update(1)
        yield item


class McoreWriter(Writer):
    """All TP (and EP) rank files of a stage in one pass over its layers: each rank's shard of a fused tensor is
    written from views of the canonical tensors (:func:`tunebridge.model.layout.pack_shards`; only row-parallel
    shards are copied), by a writer thread while the next tensor is read, so memory holds about one layer. An
    expert goes to the ep rank holding it, every other tensor to each ep rank."""

    def __init__(self, spec: ModelSpec, layout: Layout):
        super().__init__(spec, layout)
        if problem := tp_problem(spec, layout.tp) or ep_problem(spec, layout.ep):
            raise TunebridgeError(f"--{problem}")
        self.stages = mcore_fmt.stages(spec, layout.pp, layout.num_layer_list)
        self.total = layout.tp * sum(
            1 if expert is not None else layout.ep
            for s in range(layout.pp)
            for _, _, _, expert in _stage_items(spec, self.stages, s, layout.ep)
        )

    def write(self, out, source, dtype, bar):
        spec, tp, pp, ep = source.spec, self.layout.tp, self.layout.pp, self.layout.ep
        divisible_by = self.layout.make_vocab_size_divisible_by
        vocab = padded_vocab_size(spec.vocab_size, tp, divisible_by)
        out_dtype = dtype or source.dtype()
        args = mcore_fmt.make_args(spec, tp, pp, self.layout.num_layer_list, divisible_by, out_dtype, ep)
        held: dict[str, tuple[int | None, torch.Tensor]] = {}  # each part's last canonical tensor (experts stacked)

        def canonical(part: str, layer: int | None) -> torch.Tensor:
            if part not in held or held[part][0] != layer:
                held[part] = layer, source.get(part, layer).to(out_dtype)
            return held[part][1]

        def shards(rule, layer: int | None, expert: int | None):
            parts = [canonical(p, layer) if expert is None else canonical(p, layer)[expert] for p in rule.parts]
            return tensor_layout.pack_shards(rule, parts, spec, tp, vocab if rule.shard is Shard.VOCAB else None)

        with ExitStack() as stack:
            # a writer thread per rank file of a stage: their CRCs and writes run side by side
            backgrounds = [
                stack.enter_context(Background(max_bytes=max(64 << 20, (256 << 20) // (tp * ep))))
                for _ in range(tp * ep)
            ]
            for s in range(pp):
                writers = [
                    [
                        mcore_fmt.RankFileWriter(out, t, s, pp, background=backgrounds[e * tp + t], ep_rank=e, ep=ep)
                        for t in range(tp)
                    ]
                    for e in range(ep)
                ]
                for name, rule, layer, expert in _stage_items(spec, self.stages, s, ep):
                    ranks = range(ep) if expert is None else [local_expert(spec, expert, ep)[0]]
                    tensor_shards = shards(rule, layer, expert)
                    for e in ranks:
                        for writer, (shape, pieces) in zip(writers[e], tensor_shards):
                            writer.add_pieces(name, out_dtype, shape, pieces)
                        bar.update(tp)
                for writer in (w for rank in writers for w in rank):
                    writer.finish(args)
        mcore_fmt.write_latest(out)


def _stage_items(
    spec: ModelSpec, stages: list[range], s: int, ep: int = 1
) -> list[tuple[str, TensorRule, int | None, int | None]]:
    """The mcore tensors of pipeline stage ``s`` as (name, rule, global layer or None, global expert or None), in
    writing order; an expert's name holds its index on its ep rank."""
    first, last = s == 0, s == len(stages) - 1
    items: list[tuple[str, TensorRule, int | None, int | None]] = []
    for rule in MCORE.rules(spec):
        if rule.per_expert:
            items += [
                (rule.format(j, local_expert(spec, e, ep)[1]), rule, g, e)
                for j, g in enumerate(stages[s])
                for e in range(spec.num_experts)
            ]
        elif rule.per_layer:
            items += [(rule.format(j), rule, g, None) for j, g in enumerate(stages[s])]
        elif (rule.parts[0] == "embed" and first) or (rule.parts[0] != "embed" and last):
            items.append((rule.name, rule, None, None))
    if spec.tied_embeddings and last and len(stages) > 1:  # megatron keeps a copy of the embedding on the last stage
        items.append(("output_layer.weight", MCORE.rule_for_part("embed", spec), None, None))
    return sorted(items, key=lambda item: (item[2] is None, item[2] or 0))


def write_source(
    source: Source,
    dst: str | Path,
    dst_format: str,
    *,
    dtype: str | None = None,
    force: bool = False,
    progress: bool = True,
    label: str = "",
    **layout,
) -> Path:
    """Write canonical tensors from ``source`` as ``dst_format`` (``layout``: :class:`Layout`'s fields);
    ``dst`` appears only on success."""
    writer_class = checkpoint_format(dst_format).load("writer")
    if dtype is not None and dtype not in DTYPES:
        raise TunebridgeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    writer = writer_class(source.spec, Layout(**layout))
    with (
        atomic_dir(dst, force=force) as tmp,
        tqdm(total=writer.total, desc=label or f"-> {dst_format}", unit="tensor", disable=not progress) as bar,
    ):
        try:
            writer.write(tmp, source, DTYPES.get(dtype) if dtype else None, bar)
        finally:
            source.finish()  # the source's pending checks (CRCs) pass before dst appears
    return Path(dst)


def convert(
    src: str | Path, dst: str | Path, src_format: str, dst_format: str, *, spec: ModelSpec | None = None, **options
) -> Path:
    """Convert a checkpoint (options as :func:`write_source`); ``dst`` appears only on success."""
    checkpoint_format(dst_format)  # an unknown target is refused before the source is read
    source = open_source(src, src_format, spec)
    return write_source(source, dst, dst_format, label=f"{src_format} -> {dst_format}", **options)
