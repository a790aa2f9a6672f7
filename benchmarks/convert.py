"""Conversion speed and memory on a synthetic Llama-shaped bf16 checkpoint (not a test).

    .venv/bin/python benchmarks/convert.py [--sizes 1,2] [--work DIR] [--keep]

For each model size (GB) it writes a synthetic HF checkpoint, then times in separate processes
HF -> mcore (tp 2, pp 2), mcore -> HF, and HF -> MindFormers, each right after `cp -r` of its source
(the same bytes, in the same state of the page cache and the file system), and
prints wall time, the ratio to the copy and each conversion's peak RSS. Both sizes share the layer
shape, so a streaming converter's peak RSS should follow the layer, not the model. Each copy and
conversion runs ``--repeat`` times, alternating; the table shows medians (this VM's write speed swings
2-3x from run to run, for ``cp`` as much as for the conversion).
Before each timed step (the copy too) dirty pages are flushed with an untimed ``sync``, so that no step is
throttled by the write-back of the ones before it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunebridge.model.dialects import HF  # noqa: E402
from tunebridge.converters.formats.hf import write_hf  # noqa: E402
from tunebridge.model.spec import ModelSpec  # noqa: E402

LAYER = dict(hidden_size=2048, num_heads=16, num_kv_heads=4, ffn_hidden_size=5632, vocab_size=32000)


def synthetic_spec(gb: float) -> ModelSpec:
    base = ModelSpec("bench", "llama", num_layers=1, **LAYER)
    per_layer = base.layer_params() * 2
    fixed = (base.total_params() - base.layer_params()) * 2
    layers = max(2, round((gb * 2**30 - fixed) / per_layer))
    layers += layers % 2  # pp 2
    return base.with_(num_layers=layers, name=f"bench-{layers}l")


def write_synthetic(path: Path, spec: ModelSpec) -> None:
    path.mkdir(parents=True)
    entries = [(HF.rule_for_part(p, spec).format(i), torch.bfloat16, spec.shape(p)) for p, i in spec.tensors()]
    gen = torch.Generator().manual_seed(0)

    def tensors():
        for (name, _, shape) in entries:
            yield name, (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
    write_hf(path, spec, entries, tensors(), max_shard_bytes=1 << 30)


CHILD = """
import sys, time
from tunebridge.converters.checkpoint import convert
a = dict(tp={tp}, pp={pp}) if {mcore} else {{}}
t = time.perf_counter()
convert({src!r}, {dst!r}, {sf!r}, {df!r}, progress=False, **a)
# VmHWM, not ru_maxrss: the latter carries the parent's peak across exec
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(time.perf_counter() - t, hwm * 1024)
"""


def timed_convert(src: Path, dst: Path, sf: str, df: str, tp: int = 2, pp: int = 2) -> tuple[float, int]:
    code = CHILD.format(src=str(src), dst=str(dst), sf=sf, df=df, tp=tp, pp=pp, mcore=df == "mcore")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    seconds, rss = out.stdout.split()[-2:]
    return float(seconds), int(rss)


SETTLE_S = 4.0  # after each sync, so the copy and the conversion start from the same memory state


def settle() -> None:
    os.sync()
    time.sleep(SETTLE_S)


def timed_copy(src: Path, dst: Path) -> float:
    settle()
    t = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dst)], check=True)
    return time.perf_counter() - t


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,2", help="model sizes in GB")
    ap.add_argument("--work", default="/tmp/tunebridge-bench-convert", help="scratch directory (GBs; removed)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each copy and conversion (medians shown)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    try:
        for gb in (float(s) for s in args.sizes.split(",")):
            spec = synthetic_spec(gb)
            d = work / f"{gb:g}gb"
            write_synthetic(d / "hf", spec)
            size = dir_bytes(d / "hf")
            largest_layer = spec.layer_params() * 2
            for label, src, dst, sf, df in [("hf -> mcore tp2 pp2", d / "hf", d / "mc", "hf", "mcore"),
                                            ("mcore tp2 pp2 -> hf", d / "mc", d / "back", "mcore", "hf"),
                                            ("hf -> mindformers", d / "hf", d / "mf", "hf", "mindformers")]:
                cps, runs = [], []
                for run in range(args.repeat):
                    cps.append(timed_copy(src, d / "copy"))
                    shutil.rmtree(d / "copy")
                    if run:  # drop the previous run's output (the last one stays: the next conversion reads it)
                        shutil.rmtree(dst)
                    settle()
                    runs.append(timed_convert(src, dst, sf, df))
                cp, seconds = statistics.median(cps), statistics.median(s for s, _ in runs)
                rss = max(r for _, r in runs)
                rows.append({"model_gb": round(size / 2**30, 2), "layers": spec.num_layers, "conversion": label,
                             "seconds": round(seconds, 2), "cp_seconds": round(cp, 2),
                             "ratio_to_cp": round(seconds / cp, 2), "peak_rss_gb": round(rss / 2**30, 3),
                             "layer_gb": round(largest_layer / 2**30, 3),
                             "runs": [round(s, 2) for s, _ in runs], "cp_runs": [round(c, 2) for c in cps]})
                print(json.dumps(rows[-1]), flush=True)
            if not args.keep:
                shutil.rmtree(d)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| model | conversion | time | cp | ratio | peak RSS |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model_gb']} GB ({r['layers']} layers) | {r['conversion']} | {r['seconds']} s | "
              f"{r['cp_seconds']} s | {r['ratio_to_cp']}x | {r['peak_rss_gb']} GB |")


if __name__ == "__main__":
    main()
