"""Data conversion throughput and memory (not a test).

    .venv/bin/python benchmarks/data.py [--records 50000,200000] [--workers 1,2]

Writes synthetic Alpaca JSONL records, converts them with `tunebridge data convert --to megatron` through the
embedded tokenizer in a child process, and prints samples/s and the main process's peak RSS (pool workers,
each holding a tokenizer, are listed apart). Memory should not grow with the number of records.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import resource, sys, time
from tunebridge.cli import main
t = time.perf_counter()
rc = main(["data", "convert", {src!r}, {out!r}, "--template", "qwen", "--seq-length", "512", "--to", "megatron",
           "--workers", "{workers}"])
elapsed = time.perf_counter() - t
print("RESULT", rc, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def synthetic(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "model data train token answer question number river city learn write read".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            a, b = rng.randint(-999, 999), rng.randint(-999, 999)
            f.write(json.dumps({"instruction": f"What is {a} + {b}?", "input": " ".join(rng.choices(words, k=8)),
                                "output": f"The answer is {a + b}."}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", default="50000,200000")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    work = ROOT / "benchmarks" / "out" / "data"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    try:
        for n in map(int, args.records.split(",")):
            src = work / f"alpaca_{n}.jsonl"
            synthetic(src, n)
            for w in map(int, args.workers.split(",")):
                out = work / f"out_{n}_{w}"
                code = CHILD.format(src=str(src), out=str(out), workers=w)
                res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
                _, rc, elapsed, rss, child_rss = next(l for l in res.stdout.splitlines() if l.startswith("RESULT")).split()
                rows.append({"records": n, "workers": w, "seconds": round(float(elapsed), 1),
                             "samples_per_s": round(n / float(elapsed)), "peak_rss_mb": round(int(rss) / 2**20),
                             "worker_rss_mb": round(int(child_rss) / 2**20) if w > 1 else None})
                print(json.dumps(rows[-1]), flush=True)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| records | workers | time | samples/s | peak RSS (main) | peak RSS (a worker) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['records']:,} | {r['workers']} | {r['seconds']} s | {r['samples_per_s']:,} | {r['peak_rss_mb']} MB | "
              f"{r['worker_rss_mb'] or '-'}{' MB' if r['worker_rss_mb'] else ''} |")


if __name__ == "__main__":
    main()
