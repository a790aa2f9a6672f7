"""Data conversion throughput and memory (not a test).

    .venv/bin/python benchmarks/data.py [--records 30000,200000] [--workers 1,2] [--input json,jsonl] [--repeat 3]
    .venv/bin/python benchmarks/data.py --records 30000 --workers 1,2 --input json \\
        --mindspeed-llm /path/MindSpeed-LLM:/path/venv/bin/python --megatron /path/Megatron-LM

Writes synthetic Alpaca records (a JSON array, as the lab's alpaca-chinese-52k-v3.json, and/or JSONL) and
converts them with `tunebridge data convert --to megatron` (embedded tokenizer, qwen template, seq-length 1024) in
a child process; each time is the child's wall time, start-up included, the median of --repeat runs (the worker
counts alternate, so that they share whatever load the machine has; the 1-minute load average is printed). With
--mindspeed-llm, MindSpeed-LLM's own preprocess_data.py converts the same files the same way (its NPU-only
imports stubbed as scripts/make_data_goldens.py does) for reference, interleaved with tunebridge's runs. The
outputs of every run are checked byte-identical to the first. Also prints the main process's peak RSS (pool
workers, each holding a tokenizer, are listed apart).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_data_goldens import MSLLM_RUNNER, TOKENIZERS  # noqa: E402  (the stub runner, not duplicated)

SEQ = 1024
CHILD = """
import resource, sys
from tunebridge.cli import main
rc = main(["data", "convert", {src!r}, {out!r}, "--template", "qwen", "--seq-length", "{seq}", "--to", "megatron",
           "--workers", "{workers}"])
print("RESULT", rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def synthetic(path: Path, n: int, as_array: bool) -> None:
    rng = random.Random(0)
    words = "model data train token answer question number river city learn write read".split()
    rows = []
    for i in range(n):
        a, b = rng.randint(-999, 999), rng.randint(-999, 999)
        rows.append({"instruction": f"What is {a} + {b}?", "input": " ".join(rng.choices(words, k=8)),
                     "output": f"The answer is {a + b}."})
    with open(path, "w", encoding="utf-8") as f:
        if as_array:
            json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.iterdir()):
        if p.suffix in (".bin", ".idx"):
            h.update(p.name.split("_packed_", 1)[1].encode() + p.read_bytes())
    return h.hexdigest()


def run_tunebridge(src: Path, out: Path, workers: int) -> tuple[float, int, int]:
    code = CHILD.format(src=str(src), out=str(out), workers=workers, seq=SEQ)
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env=dict(os.environ, TQDM_DISABLE="1"))
    elapsed = time.perf_counter() - start
    _, rc, rss, child_rss = next(line for line in res.stdout.splitlines() if line.startswith("RESULT")).split()
    return elapsed, int(rss), int(child_rss)


def run_mindspeed(spec: str, megatron: str, src: Path, out: Path, workers: int) -> float:
    checkout, python = spec.rsplit(":", 1)
    runner = out.parent / "run_preprocess.py"
    runner.write_text(MSLLM_RUNNER)
    out.mkdir()
    args = ["--input", str(src), "--tokenizer-type", "PretrainedFromHF", "--tokenizer-name-or-path",
            str(TOKENIZERS["bpe"]), "--output-prefix", str(out / src.stem), "--workers", str(workers),
            "--log-interval", "1000", "--handler-name", "AlpacaStyleInstructionHandler", "--prompt-type", "qwen",
            "--seq-length", str(SEQ), "--cache-dir", str(out / "cache")]
    start = time.perf_counter()
    subprocess.run([python, str(runner), checkout, megatron, *args], check=True, capture_output=True,
                   env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    elapsed = time.perf_counter() - start
    shutil.rmtree(out / "cache")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", default="30000,200000")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--input", default="json", help="json (a JSON array), jsonl, or both: json,jsonl")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mindspeed-llm", metavar="CHECKOUT:PYTHON", help="also time its preprocess_data.py")
    ap.add_argument("--megatron", help="Megatron-LM checkout for --mindspeed-llm")
    args = ap.parse_args()
    work = ROOT / "benchmarks" / "out" / "data"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    try:
        for n in map(int, args.records.split(",")):
            for kind in args.input.split(","):
                src = work / f"alpaca_{n}.{kind}"
                synthetic(src, n, as_array=kind == "json")
                workers = list(map(int, args.workers.split(",")))
                times = {w: [] for w in workers}
                ms_times = {w: [] for w in workers}
                loads, rss, reference = [], {}, None
                for _ in range(args.repeat):  # worker counts (and MindSpeed-LLM) alternate: they share the load
                    for w in workers:
                        out = work / f"out_{n}_{w}"
                        elapsed, main_rss, worker_rss = run_tunebridge(src, out, w)
                        times[w].append(elapsed)
                        rss[w] = (main_rss, worker_rss)
                        reference = reference or digest(out)
                        assert digest(out) == reference, "output differs between runs / worker counts"
                        shutil.rmtree(out)
                        if args.mindspeed_llm:
                            ms_out = work / f"ms_{n}_{w}"
                            ms_times[w].append(run_mindspeed(args.mindspeed_llm, args.megatron, src, ms_out, w))
                            assert digest(ms_out) == reference, "MindSpeed-LLM's output differs from tunebridge's"
                            shutil.rmtree(ms_out)
                        loads.append(os.getloadavg()[0])
                        print(f"{n} records ({kind}), {w} worker(s): {elapsed:.2f} s, load {loads[-1]:.2f}", flush=True)
                for w in workers:
                    median = statistics.median(times[w])
                    row = {"records": n, "input": kind, "workers": w, "seconds": round(median, 2),
                           "samples_per_s": round(n / median), "peak_rss_mb": round(rss[w][0] / 2**20),
                           "worker_rss_mb": round(rss[w][1] / 2**20) if w > 1 else None,
                           "runs": [round(t, 2) for t in times[w]],
                           "load_1min": f"{min(loads):.2f}-{max(loads):.2f}"}
                    if ms_times[w]:
                        row.update(mindspeed_seconds=round(statistics.median(ms_times[w]), 2),
                                   mindspeed_runs=[round(t, 2) for t in ms_times[w]])
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| records | input | workers | tunebridge | samples/s | MindSpeed-LLM | ratio | peak RSS (main) | "
          "peak RSS (a worker) | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ms = r.get("mindspeed_seconds")
        reference = (f"{ms} s", f"{ms / r['seconds']:.1f}x") if ms else ("-", "-")
        worker = f"{r['worker_rss_mb']} MB" if r["worker_rss_mb"] else "-"
        print(f"| {r['records']:,} | {r['input']} | {r['workers']} | {r['seconds']} s | {r['samples_per_s']:,} | "
              f"{reference[0]} | {reference[1]} | {r['peak_rss_mb']} MB | {worker} | {r['load_1min']} |")


if __name__ == "__main__":
    main()
