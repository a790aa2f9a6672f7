"""Run the stacks' own preprocessing on tunebridge's edge-case records and keep what they write, as golden fixtures
(tests/fixtures/data-goldens/, see its README). Not run in CI: it needs the stacks' checkouts and their environments.

    python scripts/make_data_goldens.py \
        --mindspeed-llm 2.3.0=/path/MindSpeed-LLM-2.3.0:/path/venv-transformers-4.57.1/bin/python \
        --mindspeed-llm master=/path/MindSpeed-LLM-master:/path/venv-transformers-5.2.0/bin/python \
        --megatron /path/Megatron-LM-core_v0.12.1 \
        --mindformers /path/mindformers-r1.8.0 --mindformers-python .venv-mindspore/bin/python

MindSpeed-LLM's preprocess_data.py runs on CPU: the only module it imports that needs an NPU
(mindspeed_llm.training.utils, via torch_npu/acl) is replaced by a stub with the two names the preprocessing path
imports, and MindSpeed-LLM's own IndexedDatasetBuilder patches (which its NPU adaptor applies) are applied from its
checkout. Every run goes twice: first with a seq-length no sample reaches, to read the sample lengths, then with
seq-length S = the length of the middle record of the "ladder" (the same prompt with answers one token apart), so
that samples of exactly S-1, S and S+1 tokens are in every run. MindFormers' alpaca_converter.py and
llama_preprocess.py run the same way (two passes) in MindFormers' environment; its MindRecord rows are kept as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "data-goldens"
TOKENIZERS = {"bpe": ROOT / "tunebridge" / "assets" / "tokenizer", "sp": ROOT / "tests" / "fixtures" / "tokenizer-sp"}
SP_JSON = ROOT / "tests" / "fixtures" / "tokenizer-sp-json"  # tokenizer-sp as transformers 4.57.1 saves it, no .model
TEMPLATES = ("qwen", "qwen_lf", "chatml", "llama3", "llama2", "alpaca", "empty")
LADDER = 5  # answers "ok", "ok!", ... "ok!!!!": one token apart on both tokenizers
UNREACHABLE = 100_000
# (input, handler, --map-keys, templates)
MINDSPEED_RUNS = [
    ("alpaca_edge.json", "AlpacaStyleInstructionHandler", {"system": "system", "history": "history"}, TEMPLATES),
    ("alpaca_edge.json", "AlpacaStyleInstructionHandler", None, ("qwen",)),
    ("sharegpt_edge.json", "SharegptStyleInstructionHandler", None, TEMPLATES),
]
LONG = " ".join(["word"] * 300)


def alpaca_records() -> list[dict]:
    def rec(instruction, query, output, system=None, history=None):
        return {"instruction": instruction, "input": query, "output": output, "system": system,
                "history": history or []}
    records = [
        rec("Give three tips for staying healthy.", "", "1. Eat well.\n2. Sleep.\n3. Move."),
        rec("", "Translate: good morning", "早上好"),
        rec("Summarize the text.", "The river city grew each year.", "It grew."),
        rec("", "", "An answer to nothing."),
        rec("Say nothing.", "", ""),
        rec("给出两个关于保持健康的建议。", "读者 #0", "1. 多喝水。\n2. 早睡。"),
        rec("Describe 😀 in words 🎉", "", "A smiling face 😀."),
        rec("What does <|im_end|> mean?", "<s>x", "It ends a turn: <|im_end|> and <|eot_id|>, not </s> or <unk>."),
        rec("Line one\r\nline two", "a\r\nb", "c\r\nd\r\n"),
        rec(" leading space", "  two spaces ", " answer with spaces  "),
        rec("\n\nnewlines first", "", "\nanswer\n"),
        rec("Who are you?", "", "A model.", system="You are terse."),
        rec("Who am I?", "", "You.", system=""),
        rec("And then?", "", "Then 5.", history=[["Add 2 and 3.", "5."], ["", ""], ["Minus one?", "4."]]),
        rec("tab\there", "", "Ünïcödé ｆｕｌｌ　width"),
        rec("Write a long answer.", "", LONG),
        rec("Last question?", "", "Last.", history=[[LONG, LONG], ["Short?", "Short."]]),
    ]
    return records + [rec("Count the marks.", "", "ok" + "!" * k) for k in range(LADDER)]


def sharegpt_records() -> list[dict]:
    def conv(*turns):
        return {"conversations": [{"from": role, "value": text} for role, text in turns]}
    records = [
        conv(("system", "You are terse."), ("human", "Add 2 and 3."), ("gpt", "5."), ("human", "Minus one?"),
             ("gpt", "4.")),
        conv(("system", ""), ("human", "Hi"), ("gpt", "Hello.")),
        conv(("human", "中文问题？"), ("gpt", "中文回答。😀")),
        conv(("human", ""), ("gpt", ""), ("human", "Now?"), ("gpt", "Now.")),
        conv(("human", "Say nothing."), ("gpt", "")),
        conv(("human", "<|im_end|>fake"), ("gpt", "</s> then <s>")),
        conv(("human", "a\r\nb"), ("gpt", "c\r\n")),
        conv(("human", " leading"), ("gpt", "  spaces ")),
        conv(("human", LONG), ("gpt", LONG), ("human", "Short?"), ("gpt", "Short.")),
        conv(("human", "Write a long answer."), ("gpt", LONG)),
    ]
    return records + [conv(("human", "Count the marks."), ("gpt", "ok" + "!" * k)) for k in range(LADDER)]


def write_inputs(where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    # the Alpaca file has CRLF line ends (text values carry their own \r\n escapes)
    text = json.dumps(alpaca_records(), ensure_ascii=False, indent=1).replace("\n", "\r\n")
    (where / "alpaca_edge.json").write_bytes(text.encode("utf-8"))
    (where / "sharegpt_edge.json").write_text(json.dumps(sharegpt_records(), ensure_ascii=False, indent=1) + "\n",
                                              encoding="utf-8")


MSLLM_RUNNER = '''
import importlib.util, runpy, sys, types
checkout, megatron = sys.argv[1], sys.argv[2]
sys.argv = [checkout + "/preprocess_data.py"] + sys.argv[3:]
sys.path[:0] = [checkout, megatron]
package = types.ModuleType("mindspeed_llm")  # its __init__ loads the NPU adaptor
package.__path__ = [checkout + "/mindspeed_llm"]
sys.modules["mindspeed_llm"] = package
utils = types.ModuleType("mindspeed_llm.training.utils")  # imports acl and torch_npu
utils.auto_coverage = lambda f: f
utils.compute_actual_seq_len = None
sys.modules["mindspeed_llm.training.utils"] = utils
spec = importlib.util.spec_from_file_location("msllm_indexed", checkout + "/mindspeed_llm/core/datasets/indexed_dataset.py")
patches = importlib.util.module_from_spec(spec)
spec.loader.exec_module(patches)
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
IndexedDatasetBuilder.__init__ = patches.indexed_dataset_builder_init_wrapper(IndexedDatasetBuilder.__init__)
IndexedDatasetBuilder.add_item = patches.add_item_wrapper(IndexedDatasetBuilder.add_item)
IndexedDatasetBuilder.finalize = patches.finalize_wrapper(IndexedDatasetBuilder.finalize)
runpy.run_path(sys.argv[0], run_name="__main__")
'''

MF_ROWS = '''
import json, sys
from mindspore.mindrecord import FileReader
reader = FileReader(sys.argv[1])
rows = [{k: [int(x) for x in row[k]] for k in ("input_ids", "labels")} for row in reader.get_next()]
reader.close()
json.dump(rows, open(sys.argv[2], "w"))
'''


TOKENIZE = '''
import json, os, sys
texts, dirs = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
if sys.argv[3] == "mindformers":
    from mindformers.models.llama.llama_tokenizer import LlamaTokenizer
    make = lambda d: LlamaTokenizer(vocab_file=d + "/tokenizer.model")  # as llama_preprocess.py builds it
    version = "mindformers"
else:
    import transformers
    from transformers import AutoTokenizer
    make = lambda d: AutoTokenizer.from_pretrained(d, use_fast=True, local_files_only=True, trust_remote_code=True)
    version = "transformers-" + transformers.__version__
    if len(sys.argv) > 4:  # save tokenizer-sp as this transformers writes it (a tokenizer.json)
        make(dirs["sp"]).save_pretrained(sys.argv[4])
        os.remove(sys.argv[4] + "/tokenizer.model")
out = {name: [make(d).encode(t, add_special_tokens=False) for t in texts] for name, d in dirs.items()}
print("@@" + json.dumps({version: out}))
'''


def _run(cmd: list[str], **kwargs) -> str:
    """Run a stack's program; on failure show its error output."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if res.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res.stdout


def tokenizer_strings() -> list[str]:
    """Hand-picked edge cases, then random mixes of spaces, newlines, CJK, emoji and special-token text."""
    import random
    edge = ["hello", " hello", "  two  spaces ", "", " ", "\n", "\n\n", "\r\n", "a\nb", "x\n", "中文", "😀", "▁x",
            "<s>x", "x</s>y", "x </s> y", "<|im_end|>", "a<|im_end|>b", "<|im_end|>\n<|im_start|>assistant\n",
            "hi<unk>", "### Instruction:\nfoo", "ASSISTANT: ", " ASSISTANT: 5", "tab\tx", "Ü ｆｕｌｌ\u3000width"]
    atoms = [" ", "  ", "\n", "\r\n", "\t", "a", "hello", "The", "中文", "计算", "😀", "é", "123", "4.5", "<s>", "</s>",
             "<unk>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "▁", "###", ":", "[INST]",
             "<<SYS>>", "ASSISTANT:", "<", "|", "\u00a0", "\u3000", "ｆｕｌｌ"]
    rng = random.Random(0)
    return edge + ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 8))) for _ in range(300)]


def tokenizer_ids(pythons: list[str], mindformers_python: str | None, work: Path) -> None:
    """The ids each stack's tokenizer gives for tokenizer_strings(), per tokenizer directory."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "texts.json").write_text(json.dumps(tokenizer_strings()))
    script = work / "stack_token_ids.py"  # not tokenize.py: that would shadow the standard library
    script.write_text(TOKENIZE)
    result: dict = {}
    runs = [(py, "transformers") for py in pythons] + ([(mindformers_python, "mindformers")] if mindformers_python
                                                       else [])
    for i, (python, kind) in enumerate(runs):
        dirs = {"sp": str(TOKENIZERS["sp"])} if kind == "mindformers" else {
            "bpe": str(TOKENIZERS["bpe"]), "sp": str(TOKENIZERS["sp"]), "sp-json": str(SP_JSON)}
        save = [str(SP_JSON)] if i == 0 and kind == "transformers" else []
        if save:
            shutil.rmtree(SP_JSON, ignore_errors=True)
            dirs_first = {k: v for k, v in dirs.items() if k != "sp-json"}
            _run([python, script, work / "texts.json", json.dumps(dirs_first), kind, *save], cwd=work)
        env = dict(os.environ, GLOG_v="3")
        env.pop("PYTHONPATH", None)
        out = _run([python, script, work / "texts.json", json.dumps(dirs), kind], cwd=work, env=env)
        result.update(json.loads(next(line for line in out.splitlines() if line.startswith("@@"))[2:]))
    (OUT / "tokenizer_ids.json").write_text(json.dumps({"strings": tokenizer_strings(), "ids": result},
                                                       ensure_ascii=False) + "\n")
    print(f"tokenizer ids: {', '.join(result)}", flush=True)


def idx_sizes(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, document index) of a Megatron .idx file."""
    raw = path.read_bytes()
    n, docs = (int(x) for x in np.frombuffer(raw[18:34], dtype="<u8"))
    sizes = np.frombuffer(raw, dtype="<i4", count=n, offset=34)
    doc_index = np.frombuffer(raw, dtype="<i8", count=docs, offset=34 + 4 * n + 8 * n)
    return sizes, doc_index


def msllm_args(inp: Path, tokenizer: Path, prefix: Path, handler: str, template: str, seq: int,
               map_keys: dict | None) -> list[str]:
    args = ["--input", str(inp), "--tokenizer-type", "PretrainedFromHF", "--tokenizer-name-or-path", str(tokenizer),
            "--output-prefix", str(prefix), "--workers", "1", "--log-interval", "1000", "--handler-name", handler,
            "--prompt-type", template, "--seq-length", str(seq)]
    return args + (["--map-keys", json.dumps(map_keys)] if map_keys else [])


def run_msllm(python: str, checkout: str, megatron: str, runner: Path, args: list[str], cache: Path,
              log: Path) -> None:
    """One preprocess_data.py run; a fresh datasets cache so that no earlier run's cache is reused."""
    with open(log, "a") as f:
        subprocess.run([python, str(runner), checkout, megatron, *args, "--cache-dir", str(cache)], check=True,
                       stdout=f, stderr=f, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))


def mindspeed(label: str, checkout: str, python: str, megatron: str, work: Path, manifest: dict) -> None:
    work.mkdir(parents=True, exist_ok=True)
    runner = work / "run_preprocess.py"
    runner.write_text(MSLLM_RUNNER)
    inputs = OUT / "inputs"
    for tok_name, tok in TOKENIZERS.items():
        for inp, handler, map_keys, templates in MINDSPEED_RUNS:
            n_records = len(json.loads((inputs / inp).read_text(encoding="utf-8")))
            for template in templates:
                variant = Path(inp).stem + ("_mapped" if map_keys else "")
                run_id = f"{label}/{tok_name}/{variant}/{template}"
                scratch = work / run_id.replace("/", "_")
                scratch.mkdir(parents=True)
                log = scratch / "log.txt"
                probe = scratch / "probe" / "edge"
                probe.parent.mkdir()
                run_msllm(python, checkout, megatron, runner, msllm_args(
                    inputs / inp, tok, probe, handler, template, UNREACHABLE, map_keys), scratch / "cache1", log)
                sizes, _ = idx_sizes(Path(f"{probe}_packed_input_ids_document.idx"))
                assert len(sizes) == n_records, (run_id, len(sizes), n_records)
                seq = int(sizes[n_records - LADDER + LADDER // 2])
                dest = OUT / "mindspeed-llm" / run_id
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                args = msllm_args(inputs / inp, tok, dest / "edge", handler, template, seq, map_keys)
                run_msllm(python, checkout, megatron, runner, args, scratch / "cache2", log)
                manifest["mindspeed-llm"][run_id] = {
                    "input": inp, "tokenizer": tok_name, "template": template, "handler": handler,
                    "map_keys": map_keys, "seq_length": seq, "records": n_records,
                    "command": "python preprocess_data.py " + " ".join(
                        _shell(a.replace(str(ROOT) + "/", "")) for a in args)}
                save_manifest(manifest)  # after every run: an interrupted run keeps what it made
                print(f"{run_id}: seq_length {seq}", flush=True)


def _shell(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:" for c in arg) else "'" + arg.replace("'", "'\\''") + "'"


def mindformers(checkout: str, python: str, work: Path, manifest: dict) -> None:
    tools = Path(checkout) / "mindformers" / "tools" / "dataset_preprocess" / "llama"
    rows_script = work / "mf_rows.py"
    rows_script.write_text(MF_ROWS)
    inputs = OUT / "inputs"
    converted = work / "alpaca_edge_conversation.json"
    env = dict(os.environ, GLOG_v="3")
    env.pop("PYTHONPATH", None)
    _run([python, tools / "alpaca_converter.py", "--data_path", inputs / "alpaca_edge.json", "--output_path",
          converted], cwd=work, env=env)
    for name, source in (("alpaca_edge", converted), ("sharegpt_edge", inputs / "sharegpt_edge.json")):
        n_records = len(json.loads(source.read_text(encoding="utf-8")))

        def run(seq: int, out: Path) -> list[dict]:
            _run([python, tools / "llama_preprocess.py", "--dataset_type", "qa", "--input_glob", source,
                  "--model_file", TOKENIZERS["sp"] / "tokenizer.model", "--seq_length", seq, "--output_file", out],
                 cwd=work, env=env)
            _run([python, rows_script, out, f"{out}.json"], cwd=work, env=env)
            return json.loads(Path(str(out) + ".json").read_text())

        probe = run(1024, work / f"{name}_probe.mindrecord")
        ladder = probe[n_records - LADDER + LADDER // 2]["input_ids"]
        seq = max(i for i, x in enumerate(ladder) if x != 0) + 1  # its unpadded length (pad id 0)
        rows = run(seq, work / f"{name}.mindrecord")
        assert len(rows) == n_records
        dest = OUT / "mindformers" / f"{name}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows) + "\n]\n")
        manifest["mindformers"][name] = {
            "input": "alpaca_edge.json" if name == "alpaca_edge" else "sharegpt_edge.json", "tokenizer": "sp",
            "seq_length": seq, "records": n_records, "converted_by": "alpaca_converter.py" if name == "alpaca_edge"
            else None,
            "command": f"python llama_preprocess.py --dataset_type qa --input_glob {source.name} "
                       f"--model_file tests/fixtures/tokenizer-sp/tokenizer.model --seq_length {seq} "
                       f"--output_file {name}.mindrecord"}
        save_manifest(manifest)
        print(f"mindformers/{name}: seq_length {seq}", flush=True)


def drop_attention_masks() -> None:
    """MindSpeed-LLM's attention-mask files hold ones for every input id: checked here, then not stored."""
    for ids_idx in (OUT / "mindspeed-llm").rglob("*_packed_input_ids_document.idx"):
        mask_idx = Path(str(ids_idx).replace("_input_ids_", "_attention_mask_"))
        mask_bin = mask_idx.with_suffix(".bin")
        if not mask_idx.exists():
            continue
        ids_bin = ids_idx.with_suffix(".bin")
        assert mask_idx.read_bytes() == ids_idx.read_bytes(), mask_idx
        assert mask_bin.read_bytes() == np.ones(ids_bin.stat().st_size // 4, dtype="<i4").tobytes(), mask_bin
        mask_idx.unlink()
        mask_bin.unlink()


def save_manifest(manifest: dict) -> None:
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def keep_differences(reference: str, manifest: dict) -> None:
    """Drop another version's files where they equal the reference version's byte for byte (``same_as``)."""
    runs = manifest["mindspeed-llm"]
    for run_id, entry in runs.items():
        label, rest = run_id.split("/", 1)
        ref = OUT / "mindspeed-llm" / reference / rest
        here = OUT / "mindspeed-llm" / run_id
        if label == reference or not here.exists() or f"{reference}/{rest}" not in runs:
            continue
        names = sorted(p.name for p in here.iterdir())
        if names == sorted(p.name for p in ref.iterdir()) and all(
                (here / n).read_bytes() == (ref / n).read_bytes() for n in names):
            shutil.rmtree(here)
            entry["same_as"] = f"{reference}/{rest}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mindspeed-llm", action="append", default=[], metavar="LABEL=CHECKOUT:PYTHON")
    ap.add_argument("--megatron", help="Megatron-LM checkout (core_v0.12.1) for MindSpeed-LLM")
    ap.add_argument("--mindformers", help="MindFormers checkout (r1.8.0)")
    ap.add_argument("--mindformers-python", default=str(ROOT / ".venv-mindspore" / "bin" / "python"))
    ap.add_argument("--only", choices=("tokenizers", "mindspeed-llm", "mindformers"), action="append",
                    help="make only these parts (default: all that the given checkouts allow)")
    args = ap.parse_args()
    parts = set(args.only or ("tokenizers", "mindspeed-llm", "mindformers"))
    write_inputs(OUT / "inputs")
    manifest_path = OUT / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("mindspeed-llm", {})
    manifest.setdefault("mindformers", {})
    with tempfile.TemporaryDirectory(prefix="tb-goldens-") as tmp:
        if "tokenizers" in parts:
            tokenizer_ids([spec.rsplit(":", 1)[1] for spec in args.mindspeed_llm],
                          args.mindformers_python if args.mindformers else None, Path(tmp) / "tokenizers")
        for spec in args.mindspeed_llm if "mindspeed-llm" in parts else ():
            label, rest = spec.split("=", 1)
            checkout, python = rest.rsplit(":", 1)
            manifest["mindspeed-llm"] = {k: v for k, v in manifest["mindspeed-llm"].items()
                                         if not k.startswith(label + "/")}
            mindspeed(label, checkout, python, args.megatron, Path(tmp) / label, manifest)
        if len(args.mindspeed_llm) > 1 and "mindspeed-llm" in parts:
            keep_differences(args.mindspeed_llm[0].split("=", 1)[0], manifest)
        if "mindspeed-llm" in parts:
            drop_attention_masks()
        if args.mindformers and "mindformers" in parts:
            mindformers(args.mindformers, args.mindformers_python, Path(tmp), manifest)
    save_manifest(manifest)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
