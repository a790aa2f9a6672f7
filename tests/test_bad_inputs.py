"""Every bad input and fault a user can cause: exit status 2, exactly one ``tunebridge: error:`` line that names
the field, file or flag, no traceback, and nothing half-written or lost.

One table (``CASES``) drives the command-line cases: each runs ``tunebridge.cli.main`` (the console script's entry
point: an exception escaping it is a traceback) and compares the files around it before and after. The faults
that need the operating system (a full disk, a read-only or immutable directory, ``kill -9``, two processes
writing one output) follow the table; they use real mounts, ``chattr`` and subprocesses, and skip (saying why)
where this machine does not allow them.
"""
from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from tunebridge.cli import main

from .held import held

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data" / "samples"
TINY_RECIPE = REPO / "recipes" / "tiny-demo-lora.yaml"


# --- fixtures: small real inputs, made once ------------------------------------------------------------------


class Inputs:
    """Checkpoints, adapters, data and recipes (good and bad) in one directory; tests only read them."""

    def __init__(self, root: Path):
        self.root = root

    def __getattr__(self, name: str) -> str:
        """``inputs.hf`` is the directory ``hf``; ``inputs.preds`` the file ``preds.jsonl``."""
        path = self.root / name
        return str(path if path.exists() or not (self.root / f"{name}.jsonl").exists() else self.root / f"{name}.jsonl")


def _peft(base: Path, out: Path, targets: list[str], safe: bool = True) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, lora_alpha=8,
                                                                                 target_modules=targets))
    model.save_pretrained(out, safe_serialization=safe)


def _rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/tunebridge-bad-inputs-pwned",))


def _recipe(root: Path, name: str, replace: dict[str, str] | None = None, append: str = "",
            source: Path = TINY_RECIPE) -> None:
    text = source.read_text(encoding="utf-8").replace("../tunebridge/assets", str(REPO / "tunebridge" / "assets"))
    text = text.replace("../data/samples", str(SAMPLES)).replace("../../data/samples", str(SAMPLES))
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (root / name).write_text(text + append, encoding="utf-8")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    import torch
    root = tmp_path_factory.mktemp("inputs")
    assert main(["init-model", "tiny-llama", str(root / "hf")]) == 0
    assert main(["convert", str(root / "hf"), str(root / "mcore"), "--to", "mcore"]) == 0
    assert main(["convert", str(root / "hf"), str(root / "mf"), "--to", "mindformers"]) == 0
    (root / "bare").mkdir()
    shutil.copy(root / "mf" / "model.ckpt", root / "bare" / "model.ckpt")  # a .ckpt without config.json
    _peft(root / "hf", root / "peft-qv", ["q_proj", "v_proj"])
    _peft(root / "hf", root / "peft-od", ["o_proj", "down_proj"])
    (root / "not-adapter").mkdir()
    (root / "not-adapter" / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8}')
    # safetensors whose lm_head shares the embedding's bytes: the safetensors library refuses it
    shutil.copytree(root / "hf", root / "overlap")

    def overlap(h: dict) -> None:
        h["lm_head.weight"]["data_offsets"] = list(h["model.embed_tokens.weight"]["data_offsets"])
    _rewrite_header(root / "overlap" / "model.safetensors", overlap)
    shutil.copytree(root / "hf", root / "truncated")
    st = root / "truncated" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-1000])
    shutil.copytree(root / "hf", root / "badheader")
    (root / "badheader" / "model.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all")
    shutil.copytree(root / "hf", root / "configonly")
    (root / "configonly" / "model.safetensors").unlink()
    shutil.copytree(root / "mcore", root / "evil")
    pt = next((root / "evil").rglob("model_optim_rng.pt"))
    saved = torch.load(pt, weights_only=False)
    torch.save({"model": saved["model"], "args": Evil()}, pt)
    # data
    (root / "empty.jsonl").write_text("")
    (root / "null.jsonl").write_text('{"problem": 123, "solution": null}\n')
    (root / "nokey.jsonl").write_text('{"problem": "1+1"}\n')
    (root / "malformed.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": \n')
    (root / "notes.txt").write_text("hello\n")
    (root / "lastbad.jsonl").write_text(
        (SAMPLES / "demo_math_train.jsonl").read_text(encoding="utf-8") + "{broken\n")
    for run, losses in (("run-a", (2.0, 1.5)), ("run-b", (2.0, 1.6))):
        (root / run).mkdir()
        (root / run / "metrics.jsonl").write_text("".join(
            json.dumps({"step": s, "loss": x, "lr": 0.001}) + "\n" for s, x in enumerate(losses, 1)))
    (root / "preds.jsonl").write_text('{"prediction": "42"}\n{"prediction": "7"}\n')
    (root / "refs.jsonl").write_text('{"solution": "42"}\n{"solution": "8"}\n')
    (root / "refs3.jsonl").write_text('{"solution": "42"}\n{"solution": "8"}\n{"solution": "1"}\n')
    (root / "squad-preds.jsonl").write_text('{"prediction": "Paris"}\n')
    (root / "squad-refs.jsonl").write_text('{"answers": ["Paris"]}\n')
    import pickle
    with open(root / "evil.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + b" " * 53 + b"\n")
        pickle.dump(Evil(), f)
    (root / "metrics-dir").mkdir()
    (root / "metrics-dir" / "metrics.json").write_text('{"from": "eval run"}\n')
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("the user's file\n")
    (root / "a-file").write_text("not a directory\n")
    # recipes
    (root / "recipes").mkdir()
    r = root / "recipes"
    (r / "not-utf8.yaml").write_bytes(b"name: \xff\xfe\n")
    (r / "not-yaml.yaml").write_text("name: [unclosed\n")
    (r / "a-list.yaml").write_text("- name: x\n")
    bad = {
        "lr-nan.yaml": {"lr: 3.0e-3": "lr: .nan"},
        "lr-inf.yaml": {"lr: 3.0e-3": "lr: .inf"},
        "lr-negative.yaml": {"lr: 3.0e-3": "lr: -1.0"},
        "clip-nan.yaml": {"clip_grad: 1.0": "clip_grad: .nan"},
        "rank-1000.yaml": {"rank: 8": "rank: 1000"},
        "rank-0.yaml": {"rank: 8": "rank: 0"},
        "name-escape.yaml": {"name: tiny-demo-lora": "name: ../../escape"},
        "name-slash.yaml": {"name: tiny-demo-lora": "name: a/b"},
        "unknown-key.yaml": {"seed: 0": "seed: 0\n  sed: 1"},
        "unknown-arch.yaml": {"arch: tiny-llama": "arch: tiny-lama"},
        "tp-3.yaml": {"tp: 1, pp: 1": "tp: 3, pp: 1"},
        "pp-3.yaml": {"tp: 1, pp: 1": "tp: 1, pp: 3"},
        "layer-list.yaml": {"tp: 1, pp: 1, dp: 1": "tp: 1, pp: 2, dp: 1, num_layer_list: [1, 1]"},
        "warmup.yaml": {"warmup_ratio: 0.1": "warmup_ratio: 1.5"},
        "dropout.yaml": {"dropout: 0.0": "dropout: 1.0"},
        "target.yaml": {"targets: [o, down]": "targets: [o, qq]"},
        "batch.yaml": {"global_batch_size: 8": "global_batch_size: 7"},
        "beta1.yaml": {"beta1: 0.9": "beta1: 1.0"},
        "min-lr.yaml": {"min_lr: 0.0": "min_lr: 1.0"},
        "template.yaml": {"template: qwen": "template: qwn"},
        "data-missing.yaml": {"demo_math_train.jsonl": "nonexistent.jsonl"},
        "weights-missing.yaml": {str(REPO / "tunebridge" / "assets" / "tiny-base"): "/nonexistent/base"},
        "max-steps.yaml": {"max_steps: 40": "max_steps: 0"},
        "no-weights.yaml": {f", weights: {REPO / 'tunebridge' / 'assets' / 'tiny-base'}": ""},
        "no-data.yaml": {"data:\n": "unused:\n"},
    }
    for name, replace in bad.items():
        _recipe(r, name, replace)
    _recipe(r, "no-data.yaml", {"data:\n  train": "#", "  template: qwen\n": ""})
    _recipe(r, "sample-negative.yaml", append="  transforms:\n    - sample: {strategy: head, n: -5}\n")
    _recipe(r, "sample-zero.yaml", append="  transforms:\n    - sample: {strategy: head, n: 0}\n")
    _recipe(r, "sample-typo.yaml", append="  transforms:\n    - sample: {strategy: head, nn: 5}\n")
    _recipe(r, "unknown-transform.yaml", append="  transforms:\n    - shuffle: {}\n")
    _recipe(r, "map-keys.yaml", {"format: math}": "format: alpaca, map_keys: {banana: x}}"})
    _recipe(r, "lastbad.yaml", {str(SAMPLES / "demo_math_train.jsonl"): str(root / "lastbad.jsonl")})
    _recipe(r, "empty-data.yaml", {str(SAMPLES / "demo_math_train.jsonl"): str(root / "empty.jsonl")})
    _recipe(r, "good.yaml")
    (r / "llama3.yaml").write_text((REPO / "recipes" / "llama3-8b-math-lora-r8.yaml").read_text(encoding="utf-8")
                                   .replace("../data/samples", str(SAMPLES)))
    # a model whose vocabulary (256) is smaller than the embedded tokenizer's 512 ids
    (root / "small-vocab").mkdir()
    config = json.loads((root / "hf" / "config.json").read_text())
    (root / "small-vocab" / "config.json").write_text(json.dumps({**config, "vocab_size": 256}))
    _recipe(r, "small-vocab.yaml", {"arch: tiny-llama, weights: " + str(REPO / "tunebridge" / "assets" / "tiny-base"):
                                    f"hf_config: {root / 'small-vocab'}"})
    for p in root.rglob("*"):  # the inputs are read-only to the commands
        if p.is_file():
            p.chmod(0o444)
    return Inputs(root)


# --- the table -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Inputs, Path], list[str]]  # (inputs, an empty work directory) -> command line
    says: tuple[str, ...]                      # what the error line must name (field, file, flag, reason)
    setup: Callable[[Inputs, Path], None] | None = None


def case(id: str, argv: Callable[[Inputs, Path], list[str]], *says: str, setup=None) -> Case:
    return Case(id, argv, says, setup)


def _existing_out(i: Inputs, w: Path) -> None:
    (w / "out").mkdir()
    (w / "out" / "keep.txt").write_text("the user's earlier output\n")


def _existing_metrics(i: Inputs, w: Path) -> None:
    (w / "out").mkdir()
    (w / "out" / "metrics.json").write_text('{"written by": "eval run"}\n')


def _run_without_checkpoint(i: Inputs, w: Path) -> None:
    (w / "out" / "torch").mkdir(parents=True)
    (w / "out" / "torch" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0, "lr": 0.001}\n')


def _finished_run(i: Inputs, w: Path) -> None:
    (w / "out" / "torch").mkdir(parents=True)
    (w / "out" / "torch" / "result.json").write_text(json.dumps({"backend": "torch", "steps": [
        {"step": s, "loss": 1.0, "lr": 0.001} for s in (1, 2, 3, 4)]}))


CONVERT = ["convert"]
MATH_SCORE = lambda i: ["eval", "score", "--task", "math", "--predictions", i.preds, "--references", i.refs]  # noqa: E731
SQUAD_SCORE = lambda i: ["eval", "score", "--task", "squad", "--predictions", i.__getattr__("squad-preds.jsonl"),  # noqa: E731
                         "--references", i.__getattr__("squad-refs.jsonl")]


def R(i: Inputs, name: str) -> str:
    return str(i.root / "recipes" / name)


CASES = [
    # convert: flags
    case("convert --tp 0", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--tp", "0"], "--tp", "'0'"),
    case("convert --tp -2", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--tp", "-2"], "--tp", "'-2'"),
    case("convert --tp abc", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--tp", "abc"], "--tp"),
    case("convert --pp 0", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--pp", "0"], "--pp"),
    case("convert --make-vocab-size-divisible-by 0", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore",
         "--make-vocab-size-divisible-by", "0"], "--make-vocab-size-divisible-by"),
    case("convert --max-shard-size 0", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "hf", "--max-shard-size",
                                                     "0"], "--max-shard-size"),
    case("convert --dtype fp8", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "hf", "--dtype", "fp8"], "--dtype"),
    case("convert --to missing", lambda i, w: [*CONVERT, i.hf, f"{w}/o"], "--to"),
    case("convert --tp 4 over 2 KV groups", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--tp", "4"],
         "--tp 4", "KV groups"),
    case("convert --pp 3 over 4 layers", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--pp", "3"],
         "pp=3"),
    case("convert --num-layer-list 1,1", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--pp", "2",
                                                       "--num-layer-list", "1,1"], "pp=2", "[1, 1]"),
    case("convert --num-layer-list 1,x", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore",
                                                       "--num-layer-list", "1,x"], "--num-layer-list"),
    case("convert --num-layer-list 0,4", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--pp", "2",
                                                       "--num-layer-list", "0,4"], "--num-layer-list"),
    case("convert --model and --hf-config", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--model",
                                                          "tiny-llama", "--hf-config", i.hf], "--model or --hf-config"),
    case("convert --model misspelt", lambda i, w: [*CONVERT, i.hf, f"{w}/o", "--to", "mcore", "--model",
                                                   "tiny-lama"], "tiny-lama", "tiny-llama"),
    case("convert missing source", lambda i, w: [*CONVERT, f"{w}/nothing", f"{w}/o", "--to", "mcore", "--from",
                                                 "hf"], "nothing"),
    case("convert undetectable source", lambda i, w: [*CONVERT, i.root / "notes.txt", f"{w}/o", "--to", "mcore"],
         "notes.txt", "format"),
    case("convert into an existing output", lambda i, w: [*CONVERT, i.hf, f"{w}/out", "--to", "mcore"],
         "out", "already exists", "--force", setup=_existing_out),
    case("convert into a path under a file", lambda i, w: [*CONVERT, i.hf, f"{i.__getattr__('a-file')}/o", "--to",
                                                           "mcore"], "a-file", "not a directory"),
    case("convert overlapping safetensors", lambda i, w: [*CONVERT, i.overlap, f"{w}/o", "--to", "mcore"],
         "model.safetensors", "overlap"),
    case("convert truncated safetensors", lambda i, w: [*CONVERT, i.truncated, f"{w}/o", "--to", "mcore"],
         "model.safetensors", "truncated"),
    case("convert corrupt safetensors header", lambda i, w: [*CONVERT, i.badheader, f"{w}/o", "--to", "mcore"],
         "model.safetensors", "header"),
    case("convert HF dir without weights", lambda i, w: [*CONVERT, i.configonly, f"{w}/o", "--to", "mcore"],
         "configonly", "model.safetensors"),
    case("convert mcore with a malicious pickle", lambda i, w: [*CONVERT, i.evil, f"{w}/o", "--to", "hf"],
         "model_optim_rng.pt", "refused to unpickle"),
    case("convert a bare .ckpt without --model", lambda i, w: [*CONVERT, i.bare, f"{w}/o", "--to", "hf"],
         "model.ckpt", "--model"),
    # convert-adapter, merge-lora, verify
    case("convert-adapter --tp 3", lambda i, w: ["convert-adapter", i.__getattr__("peft-od"), f"{w}/o", "--to", "mcore",
                                                 "--model", "tiny-llama", "--tp", "3"], "--tp 3", "KV groups"),
    case("convert-adapter --tp 0", lambda i, w: ["convert-adapter", i.__getattr__("peft-od"), f"{w}/o", "--to", "mcore",
                                                 "--model", "tiny-llama", "--tp", "0"], "--tp"),
    case("convert-adapter wrong --model", lambda i, w: ["convert-adapter", i.__getattr__("peft-od"), f"{w}/o", "--to",
                                                        "mcore", "--model", "llama3-8b"], "peft-od", "llama3-8b",
         "--model"),
    case("convert-adapter unknown --model", lambda i, w: ["convert-adapter", i.__getattr__("peft-od"), f"{w}/o",
                                                          "--to", "mcore", "--model", "llama9"], "llama9"),
    case("convert-adapter without --model", lambda i, w: ["convert-adapter", i.__getattr__("peft-od"), f"{w}/o",
                                                          "--to", "mcore"], "--model or --hf-config"),
    case("convert-adapter q,v to fused mcore", lambda i, w: ["convert-adapter", i.__getattr__("peft-qv"), f"{w}/o",
                                                             "--to", "mcore", "--model", "tiny-llama"],
         "linear_qkv", "not exact"),
    case("convert-adapter without weights", lambda i, w: ["convert-adapter", i.__getattr__("not-adapter"), f"{w}/o",
                                                          "--from", "peft", "--to", "mindformers", "--model",
                                                          "tiny-llama"], "not-adapter", "adapter_model"),
    case("convert-adapter undetectable", lambda i, w: ["convert-adapter", i.__getattr__("not-adapter"), f"{w}/o",
                                                       "--to", "mindformers", "--model", "tiny-llama"],
         "not-adapter", "--from"),
    case("convert-adapter missing source", lambda i, w: ["convert-adapter", f"{w}/none", f"{w}/o", "--from", "peft",
                                                         "--to", "mcore", "--model", "tiny-llama"], "none"),
    case("convert-adapter into an existing output", lambda i, w: [
        "convert-adapter", i.__getattr__("peft-od"), f"{w}/out", "--to", "mindformers", "--model", "tiny-llama"],
         "out", "already exists", setup=_existing_out),
    case("merge-lora into an existing output", lambda i, w: ["merge-lora", i.hf, i.__getattr__("peft-od"),
                                                             f"{w}/out"], "out", "already exists",
         setup=_existing_out),
    case("merge-lora adapter of another model", lambda i, w: ["merge-lora", i.hf, i.__getattr__("peft-od"), f"{w}/o",
                                                              "--model", "llama3-8b"], "llama3-8b"),
    case("merge-lora missing adapter", lambda i, w: ["merge-lora", i.hf, f"{w}/none", f"{w}/o"], "none"),
    case("verify one checkpoint", lambda i, w: ["verify", i.hf], "at least two"),
    case("verify a malicious pickle", lambda i, w: ["verify", i.hf, i.evil], "model_optim_rng.pt",
         "refused to unpickle"),
    case("verify overlapping safetensors", lambda i, w: ["verify", i.overlap, i.mcore], "model.safetensors",
         "overlap"),
    case("verify --seq-len 0", lambda i, w: ["verify", i.hf, i.mcore, "--seq-len", "0"], "--seq-len"),
    case("verify undetectable", lambda i, w: ["verify", i.hf, i.root / "notes.txt"], "notes.txt"),
    # init-model, models
    case("init-model unknown arch", lambda i, w: ["init-model", "tiny-lama", f"{w}/o"], "tiny-lama", "tiny-llama"),
    case("init-model too large", lambda i, w: ["init-model", "llama3-8b", f"{w}/o"], "llama3-8b", "small models"),
    case("init-model --seed -1", lambda i, w: ["init-model", "tiny-llama", f"{w}/o", "--seed", "-1"], "--seed"),
    case("init-model into an existing output", lambda i, w: ["init-model", "tiny-llama", f"{w}/out"],
         "out", "already exists", setup=_existing_out),
    # recipes
    case("recipe is a directory", lambda i, w: ["validate", str(i.root / "recipes")], "recipes", "directory"),
    case("recipe missing", lambda i, w: ["validate", f"{w}/none.yaml"], "none.yaml", "no such recipe"),
    case("recipe not UTF-8", lambda i, w: ["validate", R(i, "not-utf8.yaml")], "not-utf8.yaml", "UTF-8"),
    case("recipe not YAML", lambda i, w: ["validate", R(i, "not-yaml.yaml")], "not-yaml.yaml:", "YAML"),
    case("recipe not a mapping", lambda i, w: ["validate", R(i, "a-list.yaml")], "a-list.yaml:1:1", "mapping"),
    case("recipe lr .nan", lambda i, w: ["validate", R(i, "lr-nan.yaml")], "lr-nan.yaml:", "train.lr", "finite"),
    case("recipe lr .inf", lambda i, w: ["validate", R(i, "lr-inf.yaml")], "train.lr", "finite"),
    case("recipe lr negative", lambda i, w: ["validate", R(i, "lr-negative.yaml")], "train.lr", "> 0"),
    case("recipe clip_grad .nan", lambda i, w: ["validate", R(i, "clip-nan.yaml")], "train.clip_grad", "finite"),
    case("recipe LoRA rank 1000 on hidden 64", lambda i, w: ["validate", R(i, "rank-1000.yaml")],
         "finetune.lora.rank", "1000", "low-rank"),
    case("recipe LoRA rank 0", lambda i, w: ["validate", R(i, "rank-0.yaml")], "finetune.lora.rank", "> 0"),
    case("recipe name ../../escape", lambda i, w: ["validate", R(i, "name-escape.yaml")], "name:", "../../escape"),
    case("recipe name with a slash", lambda i, w: ["validate", R(i, "name-slash.yaml")], "name:", "a/b"),
    case("recipe unknown key", lambda i, w: ["validate", R(i, "unknown-key.yaml")], "train.sed", "seed"),
    case("recipe unknown arch", lambda i, w: ["validate", R(i, "unknown-arch.yaml")], "model.arch", "tiny-llama"),
    case("recipe tp 3", lambda i, w: ["validate", R(i, "tp-3.yaml")], "parallel.tp", "KV heads"),
    case("recipe pp 3", lambda i, w: ["validate", R(i, "pp-3.yaml")], "parallel.pp"),
    case("recipe num_layer_list", lambda i, w: ["validate", R(i, "layer-list.yaml")], "parallel.num_layer_list"),
    case("recipe warmup_ratio 1.5", lambda i, w: ["validate", R(i, "warmup.yaml")], "train.warmup_ratio"),
    case("recipe dropout 1.0", lambda i, w: ["validate", R(i, "dropout.yaml")], "finetune.lora.dropout"),
    case("recipe target qq", lambda i, w: ["validate", R(i, "target.yaml")], "finetune.lora.targets[1]", "'qq'"),
    case("recipe batch not a multiple", lambda i, w: ["validate", R(i, "batch.yaml")], "train.global_batch_size"),
    case("recipe beta1 1.0", lambda i, w: ["validate", R(i, "beta1.yaml")], "train.optimizer.beta1"),
    case("recipe min_lr above lr", lambda i, w: ["validate", R(i, "min-lr.yaml")], "train.min_lr"),
    case("recipe template misspelt", lambda i, w: ["validate", R(i, "template.yaml")], "data.template", "qwen"),
    case("recipe data file missing", lambda i, w: ["validate", R(i, "data-missing.yaml")], "data.train.path",
         "nonexistent.jsonl"),
    case("recipe weights missing", lambda i, w: ["validate", R(i, "weights-missing.yaml")], "model.weights"),
    case("recipe max_steps 0", lambda i, w: ["validate", R(i, "max-steps.yaml")], "train.max_steps"),
    case("recipe sample n -5", lambda i, w: ["validate", R(i, "sample-negative.yaml")],
         "data.transforms[0].sample.n", "-5"),
    case("recipe sample n 0", lambda i, w: ["validate", R(i, "sample-zero.yaml")], "data.transforms[0].sample.n"),
    case("recipe sample option misspelt", lambda i, w: ["validate", R(i, "sample-typo.yaml")],
         "data.transforms[0].sample.nn", "'n'"),
    case("recipe unknown transform", lambda i, w: ["validate", R(i, "unknown-transform.yaml")],
         "data.transforms[0].shuffle"),
    case("recipe map_keys banana", lambda i, w: ["validate", R(i, "map-keys.yaml")], "data.train.map_keys",
         "banana"),
    case("params of a bad recipe", lambda i, w: ["params", R(i, "lr-nan.yaml")], "train.lr"),
    case("params --strict inexact", lambda i, w: ["params", str(REPO / "recipes" / "llama3-8b-math-lora-r8.yaml"),
                                                  "--strict"], "mindspeed-llm", "exactly"),
    case("explain a bad recipe", lambda i, w: ["explain", R(i, "rank-1000.yaml")], "finetune.lora.rank"),
    case("explain --mindspeed-llm-version v3", lambda i, w: ["explain", R(i, "good.yaml"), "--mindspeed-llm-version",
                                                             "v3"], "--mindspeed-llm-version"),
    # render
    case("render name ../../escape", lambda i, w: ["render", R(i, "name-escape.yaml"), "--out", f"{w}/o"], "name:"),
    case("render into an existing output", lambda i, w: ["render", R(i, "good.yaml"), "--backend", "mindformers",
                                                          "--out", f"{w}/out"], "out", "already exists",
         setup=_existing_out),
    case("render --num-samples 0", lambda i, w: ["render", R(i, "good.yaml"), "--out", f"{w}/o", "--num-samples",
                                                 "0"], "--num-samples"),
    case("render --backend torch", lambda i, w: ["render", R(i, "good.yaml"), "--out", f"{w}/o", "--backend",
                                                 "torch"], "--backend"),
    # data
    case("data convert --map-keys [1,2]", lambda i, w: ["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"),
                                                        f"{w}/o", "--template", "qwen", "--seq-length", "256", "--to",
                                                        "jsonl", "--map-keys", "[1,2]"], "--map-keys", "[1,2]"),
    case("data convert --map-keys banana", lambda i, w: ["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"),
                                                         f"{w}/o", "--template", "qwen", "--seq-length", "256", "--to",
                                                         "jsonl", "--map-keys", '{"banana": "zh_output"}'],
         "--map-keys", "banana"),
    case("data convert --map-keys not JSON", lambda i, w: ["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"),
                                                           f"{w}/o", "--template", "qwen", "--seq-length", "256",
                                                           "--to", "jsonl", "--map-keys", "{bad"], "--map-keys",
         "not JSON"),
    case("data convert an empty file", lambda i, w: ["data", "convert", i.__getattr__("empty.jsonl"), f"{w}/o",
                                                     "--reader", "math", "--template", "qwen", "--seq-length", "64",
                                                     "--to", "jsonl"], "empty.jsonl", "no records"),
    case("data convert a null solution", lambda i, w: ["data", "convert", i.__getattr__("null.jsonl"), f"{w}/o",
                                                       "--reader", "math", "--template", "qwen", "--seq-length", "64",
                                                       "--to", "jsonl"], "null.jsonl:1", "'solution' is null"),
    case("data convert a missing key", lambda i, w: ["data", "convert", i.__getattr__("nokey.jsonl"), f"{w}/o",
                                                     "--reader", "math", "--template", "qwen", "--seq-length", "64",
                                                     "--to", "jsonl"], "nokey.jsonl:1", "'solution'"),
    case("data convert malformed JSONL", lambda i, w: ["data", "convert", i.__getattr__("malformed.jsonl"), f"{w}/o",
                                                       "--template", "qwen", "--seq-length", "64", "--to", "jsonl"],
         "malformed.jsonl:2", "JSON"),
    case("data convert unknown file type", lambda i, w: ["data", "convert", i.__getattr__("notes.txt"), f"{w}/o",
                                                         "--template", "qwen", "--seq-length", "64", "--to", "jsonl"],
         "notes.txt", ".txt"),
    case("data convert missing input", lambda i, w: ["data", "convert", f"{w}/none.jsonl", f"{w}/o", "--template",
                                                     "qwen", "--seq-length", "64", "--to", "jsonl"], "none.jsonl"),
    case("data convert --seq-length 0", lambda i, w: ["data", "convert", str(SAMPLES / "demo_math_train.jsonl"),
                                                      f"{w}/o", "--template", "qwen", "--seq-length", "0", "--to",
                                                      "jsonl"], "--seq-length"),
    case("data convert --workers 0", lambda i, w: ["data", "convert", str(SAMPLES / "demo_math_train.jsonl"),
                                                   f"{w}/o", "--template", "qwen", "--seq-length", "64", "--to",
                                                   "jsonl", "--workers", "0"], "--workers"),
    case("data convert --template missing", lambda i, w: ["data", "convert", str(SAMPLES / "demo_math_train.jsonl"),
                                                          f"{w}/o", "--seq-length", "64", "--to", "jsonl"],
         "--template"),
    case("data convert into an existing output", lambda i, w: [
        "data", "convert", str(SAMPLES / "demo_math_train.jsonl"), f"{w}/out", "--reader", "math", "--template",
        "qwen", "--seq-length", "64", "--to", "jsonl"], "out", "already exists", setup=_existing_out),
    case("data prepare refuses before reading", lambda i, w: ["data", "prepare", R(i, "lastbad.yaml"), "--out",
                                                              f"{w}/out"], "out", "already exists",
         setup=_existing_out),
    case("data prepare a catalogue model with the toy tokenizer", lambda i, w: [
        "data", "prepare", R(i, "llama3.yaml"), "--out", f"{w}/o"], "llama3-8b", "128,256", "data.tokenizer"),
    case("data prepare a tokenizer larger than the vocabulary", lambda i, w: [
        "data", "prepare", R(i, "small-vocab.yaml"), "--out", f"{w}/o", "--tokenizer",
        str(REPO / "tunebridge" / "assets" / "tokenizer")], "512 ids", "256"),
    case("data prepare a model of another vocabulary", lambda i, w: [
        "data", "prepare", R(i, "small-vocab.yaml"), "--out", f"{w}/o"], "256", "tokenizer"),
    case("data prepare an empty data file", lambda i, w: ["data", "prepare", R(i, "empty-data.yaml"), "--out",
                                                          f"{w}/o"], "empty.jsonl", "no records"),
    case("data prepare without a data section", lambda i, w: ["data", "prepare", R(i, "no-data.yaml"), "--out",
                                                              f"{w}/o"], "no-data.yaml", "data.train"),
    case("data prepare the last record malformed", lambda i, w: ["data", "prepare", R(i, "lastbad.yaml"), "--out",
                                                                 f"{w}/o"], "lastbad.jsonl:321", "JSON"),
    case("data prepare --workers 0", lambda i, w: ["data", "prepare", R(i, "good.yaml"), "--out", f"{w}/o",
                                                   "--workers", "0"], "--workers"),
    case("data squad missing input", lambda i, w: ["data", "squad", f"{w}/dev.json", f"{w}/o"], "dev.json"),
    case("data squad --seq-length 0", lambda i, w: ["data", "squad", str(SAMPLES / "demo_squad.json"), f"{w}/o",
                                                    "--seq-length", "0"], "--seq-length"),
    # eval
    case("eval score --low-param-ratio 4.7", lambda i, w: [*MATH_SCORE(i), "--low-param-ratio", "4.7"],
         "--low-param-ratio", "4.7"),
    case("eval score --low-param-ratio -0.5", lambda i, w: [*MATH_SCORE(i), "--low-param-ratio", "-0.5"],
         "--low-param-ratio"),
    case("eval score --low-param-ratio for squad", lambda i, w: [*SQUAD_SCORE(i), "--low-param-ratio", "0.001"],
         "--low-param-ratio", "math"),
    case("eval score --baseline-f1 alone", lambda i, w: [*SQUAD_SCORE(i), "--baseline-f1", "65.4"],
         "--baseline-f1", "--baseline-em"),
    case("eval score --baseline-em alone", lambda i, w: [*SQUAD_SCORE(i), "--baseline-em", "49.7"],
         "--baseline-em"),
    case("eval score --baseline-f1 150", lambda i, w: [*SQUAD_SCORE(i), "--baseline-f1", "150", "--baseline-em",
                                                       "50"], "--baseline-f1", "percentage"),
    case("eval score --rel-tol -1", lambda i, w: [*MATH_SCORE(i), "--rel-tol", "-1"], "--rel-tol"),
    case("eval score --out over eval run's metrics.json", lambda i, w: [*MATH_SCORE(i), "--out", f"{w}/out"],
         "metrics.json", "already exists", setup=_existing_metrics),
    case("eval score count mismatch", lambda i, w: ["eval", "score", "--task", "math", "--predictions", i.preds,
                                                    "--references", i.refs3], "preds.jsonl", "refs3.jsonl"),
    case("eval score missing predictions", lambda i, w: ["eval", "score", "--task", "math", "--predictions",
                                                         f"{w}/p.jsonl", "--references", i.refs], "p.jsonl"),
    case("eval score malicious .npy", lambda i, w: ["eval", "score", "--task", "math", "--predictions",
                                                    i.__getattr__("evil.npy"), "--references", i.refs], "evil.npy"),
    case("eval run --batch-size 0", lambda i, w: ["eval", "run", i.hf, "--task", "math", "--data",
                                                  str(SAMPLES / "demo_math_test.jsonl"), "--out", f"{w}/o",
                                                  "--batch-size", "0"], "--batch-size"),
    case("eval run --limit 0", lambda i, w: ["eval", "run", i.hf, "--task", "math", "--data",
                                             str(SAMPLES / "demo_math_test.jsonl"), "--out", f"{w}/o", "--limit",
                                             "0"], "--limit"),
    case("eval run into an existing output", lambda i, w: ["eval", "run", i.hf, "--task", "math", "--data",
                                                           str(SAMPLES / "demo_math_test.jsonl"), "--out", f"{w}/out"],
         "out", "already exists", setup=_existing_out),
    case("eval run a recipe of a catalogue model", lambda i, w: ["eval", "run", R(i, "llama3.yaml"), "--task",
                                                                 "math", "--data", str(SAMPLES / "demo_math_test.jsonl"),
                                                                 "--out", f"{w}/o"], "no model.weights"),
    # run
    case("run into an existing output", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out"],
         "out", "already exists", "--force", setup=_existing_out),
    case("run --resume with no run", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out", "--resume"],
         "no run to resume"),
    case("run --resume with no checkpoint", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out", "--resume"],
         "no checkpoint", "--save-every", setup=_run_without_checkpoint),
    case("run --resume --force", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out", "--resume", "--force"],
         "--resume", "--force", setup=_existing_out),
    case("run --resume --backend all", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out", "--resume",
                                                     "--backend", "all"], "--resume", "torch"),
    case("run --resume raising --max-steps", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/out", "--resume",
                                                           "--max-steps", "8"], "result.json", "--max-steps 8",
         setup=_finished_run),
    case("run --max-steps 0", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/o", "--max-steps", "0"],
         "--max-steps"),
    case("run --save-every -1", lambda i, w: ["run", R(i, "good.yaml"), "--out", f"{w}/o", "--save-every", "-1"],
         "--save-every"),
    case("run without weights", lambda i, w: ["run", R(i, "no-weights.yaml"), "--out", f"{w}/o"],
         "no model weights"),
    case("run without data", lambda i, w: ["run", R(i, "no-data.yaml"), "--out", f"{w}/o"], "data.train"),
    case("run a bad recipe", lambda i, w: ["run", R(i, "rank-1000.yaml"), "--out", f"{w}/o"], "finetune.lora.rank"),
    # sweep
    case("sweep rank=0,8", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "finetune.lora.rank=0,8", "--render",
                                         "--out", f"{w}/o"], "--set finetune.lora.rank=0", "finetune.lora.rank"),
    case("sweep lr=.nan", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "train.lr=.nan", "--render", "--out",
                                        f"{w}/o"], "train.lr", "finite"),
    case("sweep rank=1000", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "finetune.lora.rank=1000",
                                          "--render", "--out", f"{w}/o"], "finetune.lora.rank", "low-rank"),
    case("sweep --set without =", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "finetune.lora.rank",
                                                "--render", "--out", f"{w}/o"], "--set", "FIELD="),
    case("sweep --set unknown field", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "train.nosuch=1",
                                                    "--render", "--out", f"{w}/o"], "train.nosuch"),
    case("sweep --set unparsable value", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "train.lr=[",
                                                       "--render", "--out", f"{w}/o"], "--set", "YAML"),
    case("sweep --max-steps 0", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "train.lr=0.001", "--max-steps",
                                              "0", "--out", f"{w}/o"], "--max-steps"),
    case("sweep into an existing output", lambda i, w: ["sweep", R(i, "good.yaml"), "--set", "train.lr=0.001",
                                                        "--render", "--out", f"{w}/out"], "out", "already exists",
         setup=_existing_out),
    # compare, report
    case("compare one run", lambda i, w: ["compare", i.preds], "at least 2"),
    case("compare a missing run", lambda i, w: ["compare", f"{w}/a", f"{w}/b"], "a"),
    case("compare --names count", lambda i, w: ["compare", i.preds, i.refs, "--names", "x"], "--names"),
    case("compare --rank -1", lambda i, w: ["compare", i.preds, i.refs, "--rank", "-1"], "--rank"),
    case("report into an existing output", lambda i, w: ["report", i.__getattr__("run-a"), "--out", f"{w}/out"], "out",
         "already exists", setup=_existing_out),
    # the command line itself
    case("unknown command", lambda i, w: ["frobnicate"], "frobnicate"),
    case("unknown flag", lambda i, w: ["models", "--colour"], "--colour"),
]


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` (hidden ones too) with its type, size and content hash."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_dir():
                out[str(p)] = ("dir",)
            else:
                out[str(p)] = ("file", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def assert_one_error(code: int, err: str, says: tuple[str, ...]) -> str:
    errors = [line for line in err.splitlines() if line.startswith("tunebridge: error:")]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert len(errors) == 1, err[-2000:]
    for text in says:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    return errors[0]


def test_the_table_holds_over_a_hundred_cases():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_bad_input(c: Case, inputs: Inputs, tmp_path: Path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    if c.setup:
        c.setup(inputs, work)
    argv = [str(a) for a in c.argv(inputs, work)]
    before = snapshot(work, inputs.root)
    code = main(argv)
    assert_one_error(code, capsys.readouterr().err, c.says)
    assert snapshot(work, inputs.root) == before  # nothing written, nothing lost, no partial or lock left
    assert not Path("/tmp/tunebridge-bad-inputs-pwned").exists()


# --- faults of the operating system ------------------------------------------------------------------------------

WRITERS = {  # commands that write, each into OUT
    "convert mcore": lambda i, out: ["convert", i.hf, out, "--to", "mcore"],
    "convert mindformers": lambda i, out: ["convert", i.hf, out, "--to", "mindformers"],
    "convert hf": lambda i, out: ["convert", i.mcore, out, "--to", "hf"],
    "convert-adapter": lambda i, out: ["convert-adapter", i.__getattr__("peft-od"), out, "--to", "mcore",
                                       "--model", "tiny-llama"],
    "merge-lora": lambda i, out: ["merge-lora", i.hf, i.__getattr__("peft-od"), out],
    "init-model": lambda i, out: ["init-model", "tiny-llama", out],
    "render": lambda i, out: ["render", R(i, "good.yaml"), "--backend", "mindspeed-llm", "--out", out],
    "data convert": lambda i, out: ["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"), out, "--template",
                                    "qwen", "--seq-length", "256", "--to", "jsonl", "--map-keys",
                                    '{"prompt": "zh_instruction", "query": "zh_input", "response": "zh_output"}'],
    "data convert megatron": lambda i, out: ["data", "convert", str(SAMPLES / "seed003_alpaca_zh.json"), out,
                                             "--template", "qwen", "--seq-length", "256", "--to", "megatron",
                                             "--map-keys", '{"prompt": "zh_instruction", "query": "zh_input", '
                                                           '"response": "zh_output"}'],
    "data convert mindrecord": lambda i, out: ["data", "convert", str(SAMPLES / "demo_math_train.jsonl"), out,
                                               "--reader", "math", "--template", "qwen", "--seq-length", "64",
                                               "--to", "mindrecord"],
    "data prepare": lambda i, out: ["data", "prepare", R(i, "good.yaml"), "--backend", "torch", "--out", out],
    "eval score": lambda i, out: [*MATH_SCORE(i), "--out", out],
    "report": lambda i, out: ["report", i.__getattr__("run-a"), i.__getattr__("run-b"), "--out", out],
}


def _mount(*args: str) -> str | None:
    """None when mounted, else why not."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root and mount(8)"
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"mount {' '.join(args)} failed: {proc.stderr.strip()}"


@pytest.fixture
def full_disk(tmp_path) -> Path:
    """A small tmpfs, filled: directories and empty files can still be made, no byte can be written."""
    where = tmp_path / "full"
    where.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where))
    if why:
        pytest.skip(f"no small file system to fill: {why}")
    try:
        with open(where / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError as e:
        assert e.errno == 28
    yield where
    _unmount(where)


def _unmount(where: Path) -> None:
    gc.collect()  # a failed writer's file may still be open in this process (its exception holds it)
    subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    where = tmp_path / "ro"
    where.mkdir()
    why = _mount("--bind", str(where), str(where)) or _mount("-o", "remount,bind,ro", str(where))
    if why:
        pytest.skip(f"no read-only mount: {why}")
    yield where
    _unmount(where)


@pytest.fixture
def immutable_dir(tmp_path) -> Path:
    where = tmp_path / "immutable"
    where.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(where)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported here (not root, or the file system has no immutable flag)")
    yield where
    subprocess.run(["chattr", "-i", str(where)], check=True)


FAULTS = {  # fixture -> what the error line says
    "full_disk": "No space left on device",
    "read_only_dir": "Read-only file system",
    "immutable_dir": "Operation not permitted",
}


# A full disk fails each writer where it writes its bytes; a read-only or immutable directory fails every writer at
# the same place (the output's lock file), so three writers of different kinds stand for all there.
UNWRITABLE = [(command, "full_disk") for command in WRITERS] + [
    (command, fault) for fault in ("read_only_dir", "immutable_dir") for command in ("convert mcore", "eval score",
                                                                                       "data prepare")]


@pytest.mark.parametrize("command,fault", UNWRITABLE)
def test_unwritable_output(command, fault, inputs, request, capsys):
    if "mindrecord" in command:
        request.getfixturevalue("ms_python")  # MindSpore writes the MindRecord
    where = request.getfixturevalue(fault)
    before = snapshot(where)
    code = main([str(a) for a in WRITERS[command](inputs, str(where / "out"))])
    line = assert_one_error(code, capsys.readouterr().err, ("out",) if fault != "full_disk" or "mindrecord" not in command
                            else ("demo_math_train.mindrecord",))
    assert FAULTS[fault] in line or (fault == "full_disk" and "No free disk" in line)
    assert snapshot(where) == before


# --- processes: kill -9, two writers, Ctrl-C ----------------------------------------------------------------------

def _partials(parent: Path, name: str) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name.startswith(f".{name}.partial-"))


HELD = {  # a writer, and a function it calls while its partial output exists
    "convert": ("tunebridge.model.layout.pack_shards", lambda i, out: ["convert", i.hf, out, "--to", "mcore"]),
    "data convert": ("tunebridge.cli.data.bar_iter", lambda i, out: [
        "data", "convert", str(SAMPLES / "demo_math_train.jsonl"), out, "--reader", "math", "--template", "qwen",
        "--seq-length", "64", "--to", "megatron"]),
}


@pytest.mark.parametrize("command", list(HELD))
def test_kill_9_leaves_a_partial_that_the_next_run_removes(command, inputs, tmp_path, capsys):
    hold, argv = HELD[command]
    out = tmp_path / "out"
    proc, _ = held(tmp_path, hold, argv(inputs, out))
    assert len(_partials(tmp_path, "out")) == 1
    proc.kill()  # SIGKILL: no clean-up runs
    proc.wait(timeout=60)
    stale = _partials(tmp_path, "out")
    assert len(stale) == 1 and not out.exists()
    # partials that are not this output's stale ones stay: another output's, and a live process's
    other = tmp_path / ".other.partial-1-abcd"
    other.mkdir()
    sleeper = subprocess.Popen(["sleep", "60"])
    live = tmp_path / f".out.partial-{sleeper.pid}-beef"
    live.mkdir()
    try:
        assert main([str(a) for a in argv(inputs, out)]) == 0
        err = capsys.readouterr().err
        assert f"removed {stale[0]}" in err and f"process {stale[0].name.split('-')[1]}" in err
        assert out.is_dir() and not stale[0].exists()
        assert other.exists() and live.exists()
        assert not (tmp_path / ".out.lock").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_second_writer_of_one_output_fails_while_the_first_finishes(inputs, tmp_path, capsys):
    hold, argv = HELD["convert"]
    out = tmp_path / "out"
    proc, go = held(tmp_path, hold, argv(inputs, out))
    try:
        code = main([str(a) for a in argv(inputs, out)] + ["--force"])
        assert_one_error(code, capsys.readouterr().err, (str(out), f"pid {proc.pid}", "writing it"))
    finally:
        go.touch()
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert f"wrote {out}" in stdout
    assert (out / "latest_checkpointed_iteration.txt").exists()
    assert _partials(tmp_path, "out") == [] and not (tmp_path / ".out.lock").exists()


def test_ctrl_c_during_a_run_leaves_nothing(tmp_path):
    """SIGINT while the torch backend trains: the run directory (no checkpoint to resume from) is removed."""
    out = tmp_path / "run"
    proc, go = held(tmp_path, "tunebridge.backends.pytorch.token_losses",
                     ["run", str(REPO / "recipes" / "tiny-parity-lora.yaml"), "--out", out, "--max-steps", "4"])
    proc.send_signal(signal.SIGINT)
    go.touch()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"interrupted; {out} was removed" in stderr
    assert not out.exists() and _partials(tmp_path, "run") == [] and not (tmp_path / ".run.lock").exists()
