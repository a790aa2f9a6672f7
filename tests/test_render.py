"""Rendered launch artifacts: valid bash, every path quoted, flags that parse back to the recipe's values."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tunebridge.cli import main
from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import render, render_files
from tunebridge.backends.mindspeed_llm.render import FLAGS, GROUPS

from .families import RECIPES, renderable

NASTY = "/tmp/my dir/it's \"quoted\" $HOME `x`"

# Stand-ins for the stack's executables: each records its argv as JSON so the test sees exactly what bash passed.
RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
"""


@pytest.fixture()
def fake_bin(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("torchrun", "python", "bash-msrun", "tunebridge"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_script(script: Path, fake_bin: Path, cwd: Path, env: dict) -> list[list[str]]:
    log = cwd / "argv.jsonl"
    full_env = {**os.environ, **env, "PATH": f"{fake_bin}:{os.environ['PATH']}", "ARGV_LOG": str(log)}
    subprocess.run(["bash", str(script)], cwd=cwd, env=full_env, check=True, capture_output=True, text=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def flag_values(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    key = None
    for a in argv:
        if a.startswith("--"):
            key = a
            out[key] = []
        elif key:
            out[key].append(a)
    return out


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_renders_valid_bash(path, tmp_path):
    recipe = load_recipe(path)
    backends = renderable(path)
    checked = 0
    for backend in backends:
        # the MindSpore CPU profile runs fp32 only
        devices = ["ascend", "cpu"] if backend == "mindformers" and recipe.train.dtype == "fp32" else ["ascend"]
        for device in devices:
            for written in render(recipe, backend, tmp_path / f"{backend}-{device}", num_samples=1000,
                                  device=device):
                if written.suffix == ".sh":
                    subprocess.run(["bash", "-n", str(written)], check=True)
                    assert os.access(written, os.X_OK)
                    checked += 1
    assert checked >= 3 * len(backends)  # convert, preprocess, tune ...; prepare, run, eval ...


def test_tune_script_flags_parse_back_to_the_recipe(tmp_path, fake_bin):
    recipe = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")
    files = render(recipe, "mindspeed-llm", tmp_path / "out", num_samples=6400)
    tune = next(f for f in files if f.name.startswith("tune_"))
    calls = run_script(tune, fake_bin, tmp_path, {"CKPT_LOAD_DIR": NASTY, "DATA_PATH": NASTY + "/data"})
    (cmd,) = calls
    assert cmd[0] == "torchrun" and "posttrain_gpt.py" in cmd
    f = flag_values(cmd[cmd.index("posttrain_gpt.py") + 1:])
    t, p, lora = recipe.train, recipe.parallel, recipe.finetune.lora
    assert f["--load"] == [NASTY] and f["--data-path"] == [NASTY + "/data"]  # quoted through bash intact
    assert float(f["--lr"][0]) == t.lr and float(f["--min-lr"][0]) == t.min_lr
    assert float(f["--lr-warmup-fraction"][0]) == t.warmup_ratio
    assert float(f["--adam-beta2"][0]) == t.optimizer.beta2 and float(f["--clip-grad"][0]) == t.clip_grad
    assert int(f["--micro-batch-size"][0]) == t.micro_batch_size
    assert int(f["--global-batch-size"][0]) == t.global_batch_size
    assert int(f["--train-iters"][0]) == 100  # ceil(1 epoch x 6400 samples / 64)
    assert int(f["--pipeline-model-parallel-size"][0]) == p.pp == 8
    assert f["--num-layer-list"] == ["4,4,4,4,3,3,3,3"]
    assert int(f["--lora-r"][0]) == lora.rank and int(f["--lora-alpha"][0]) == lora.alpha
    assert f["--lora-target-modules"] == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    assert f["--stage"] == ["sft"] and f["--prompt-type"] == ["qwen"]
    assert "--add-qkv-bias" in f and "--bf16" in f and "--lora-fusion" in f
    assert int(f["--num-query-groups"][0]) == 4 and int(f["--padded-vocab-size"][0]) == 152064
    assert (tmp_path / "logs").is_dir()  # `tee logs/...` needs it: the script makes it


def test_each_version_renders_its_own_converter(tmp_path, fake_bin):
    """2.3.0: convert_ckpt.py (Megatron models; biases as flags, InternLM's o_proj bias too); master:
    convert_ckpt_v2.py (deleted convert_ckpt.py), whose model type carries the biases and has none for InternLM."""
    qwen = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")
    internlm = load_recipe("recipes/internlm-7b-mmlu-lora.yaml")
    got = {}
    for version in ("2.3.0", "master"):
        for recipe in (qwen, internlm):
            files = {f.name: f for f in render(recipe, "mindspeed-llm", tmp_path / version / recipe.name,
                                                num_samples=64, version=version)}
            for kind in ("hf2mcore", "mcore2hf"):
                log = tmp_path / "argv.jsonl"
                log.unlink(missing_ok=True)
                got[version, recipe.name, kind] = run_script(files[f"ckpt_convert_{recipe.name}_{kind}.sh"],
                                                             fake_bin, tmp_path, {})
    (cmd,) = got["2.3.0", qwen.name, "hf2mcore"]
    f = flag_values(cmd[2:])
    assert cmd[1] == "convert_ckpt.py" and "--add-qkv-bias" in f and f["--model-type-hf"] == ["llama2"]
    for kind in ("hf2mcore", "mcore2hf"):
        (cmd,) = got["2.3.0", internlm.name, kind]
        assert "--add-qkv-bias" in cmd and "--add-dense-bias" in cmd  # as tune/generate/evaluate pass them
    (cmd,) = got["master", qwen.name, "hf2mcore"]
    f = flag_values(cmd[2:])
    assert cmd[1] == "convert_ckpt_v2.py" and f["--model-type-hf"] == ["qwen25"] and "--add-qkv-bias" not in f
    assert f["--num-layer-list"] == ["4,4,4,4,3,3,3,3"] and "--use-mcore-models" not in f
    (cmd,) = got["master", qwen.name, "mcore2hf"]
    f = flag_values(cmd[2:])
    assert f["--hf-cfg-dir"] == ["./model_from_hf/qwen2.5-7b-alpaca-zh-lora"] and f["--lora-r"] == ["8"]
    assert not any(c[0] == "python" for k in ("hf2mcore", "mcore2hf") for c in got["master", internlm.name, k])


def test_tune_scripts_keep_variable_lengths():
    """--variable-seq-lengths is reset by validate_args (flag records); --no-pad-to-seq-lengths is what works."""
    recipe = load_recipe("recipes/tiny-parity-lora.yaml")
    for version in ("2.3.0", "master"):
        tune = render_files(recipe, "mindspeed-llm", 1000, version=version)["tune_tiny-parity-lora_lora_ptd.sh"]
        assert "--no-pad-to-seq-lengths" in tune and "--variable-seq-lengths" not in tune


def test_every_flag_comes_from_the_table():
    recipe = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")
    text = render_files(recipe, "mindspeed-llm", 1000)["tune_qwen2.5-7b-alpaca-zh-lora_lora_ptd.sh"]
    table = {f.flag for f in FLAGS}
    in_groups = text.split("DISTRIBUTED_ARGS=(")[1].split("mkdir -p logs")[0].split(")\n", 1)[1]
    rendered = {tok for tok in in_groups.split() if tok.startswith("--")}
    assert rendered <= table
    assert set(GROUPS) == {f.group for f in FLAGS}


def test_train_iters_required_when_unknown(tmp_path, fake_bin):
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    files = render(recipe, "mindspeed-llm", tmp_path / "out")
    tune = next(f for f in files if f.name.startswith("tune_"))
    log = tmp_path / "argv.jsonl"
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "ARGV_LOG": str(log)}
    proc = subprocess.run(["bash", str(tune)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "TRAIN_ITERS" in proc.stderr and not log.exists()


def test_convert_and_preprocess_scripts(tmp_path, fake_bin):
    recipe = load_recipe("recipes/qwen2.5-7b-alpaca-zh-lora.yaml")
    files = {f.name: f for f in render(recipe, "mindspeed-llm", tmp_path / "out", num_samples=64)}
    (convert,) = run_script(files["ckpt_convert_qwen2.5-7b-alpaca-zh-lora_hf2mcore.sh"], fake_bin, tmp_path,
                            {"HF_DIR": NASTY})
    f = flag_values(convert[2:])
    assert convert[1] == "convert_ckpt.py" and f["--load-dir"] == [NASTY]
    assert f["--params-dtype"] == ["bf16"] and "--add-qkv-bias" in f and f["--model-type-hf"] == ["llama2"]
    assert f["--target-pipeline-parallel-size"] == ["8"] and f["--num-layer-list"] == ["4,4,4,4,3,3,3,3"]
    (tmp_path / "argv.jsonl").unlink()
    (pre,) = run_script(files["data_convert_qwen2.5-7b-alpaca-zh-lora_instruction.sh"], fake_bin, tmp_path, {})
    f = flag_values(pre[2:])
    assert f["--handler-name"] == ["AlpacaStyleInstructionHandler"] and f["--prompt-type"] == ["qwen"]
    assert json.loads(f["--map-keys"][0]) == {"prompt": "zh_instruction", "query": "zh_input",
                                              "response": "zh_output"}  # data.train.map_keys
    assert (tmp_path / "finetune_dataset").is_dir()  # preprocess_data.py refuses a missing output directory


def test_mindformers_yaml_values_equal_the_recipe(tmp_path):
    recipe = load_recipe("recipes/llama3-8b-math-lora-r8.yaml")
    files = render_files(recipe, "mindformers")
    cfg = yaml.safe_load(files["finetune_llama3-8b-math-lora-r8.yaml"])  # PyYAML: YAML 1.1, as MindFormers reads it
    mc = cfg["model"]["model_config"]
    assert cfg["optimizer"]["eps"] == 1e-8 and isinstance(cfg["optimizer"]["eps"], float)
    assert cfg["lr_schedule"] == {"type": "CosineWithWarmUpLR", "learning_rate": 1e-5, "lr_end": 0.0,
                                  "warmup_ratio": 0.03, "total_steps": -1}
    assert mc["pet_config"] == {"pet_type": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                                "target_modules": ".*wq|.*wv"}
    assert (mc["hidden_size"], mc["num_layers"], mc["n_kv_heads"], mc["vocab_size"], mc["theta"]) == \
        (4096, 32, 8, 128256, 500000.0)
    assert cfg["parallel_config"]["model_parallel"] == 4 and cfg["runner_config"]["epochs"] == 3
    assert cfg["train_dataset_task"]["dataset_config"] is cfg["train_dataset"] or \
        cfg["train_dataset_task"]["dataset_config"] == cfg["train_dataset"]
    assert "--lora_scaling 2.0" in files["merge_llama3-8b-math-lora-r8_lora.sh"]


def test_msrun_command_quotes_paths(tmp_path, fake_bin):
    recipe = load_recipe("recipes/internlm-7b-mmlu-lora.yaml")  # dp 4: the msrun form
    files = {f.name: f for f in render(recipe, "mindformers", tmp_path / "out")}
    script = files["run_internlm-7b-mmlu-lora_finetune.sh"]
    text = script.read_text().replace("bash scripts/msrun_launcher.sh", "bash-msrun")
    script.write_text(text)
    (call,) = run_script(script, fake_bin, tmp_path, {"LOAD_CHECKPOINT": NASTY, "TRAIN_DATA": NASTY + ".mindrecord"})
    assert call[0] == "bash-msrun" and call[2:5] == ["4", "8118", "output/msrun_log"]
    # the inner command is one string that msrun hands to a shell: splitting it like a shell restores each path
    argv = shlex.split(call[1])
    f = flag_values(argv[2:])
    assert f["--load_checkpoint"] == [NASTY] and f["--train_dataset_dir"] == [NASTY + ".mindrecord"]
    assert f["--use_parallel"] == ["True"]


def test_render_cli_refuses_existing_output(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["render", "recipes/tiny-demo-lora.yaml", "--out", str(out)]) == 0
    assert (out / "mindformers" / "finetune_tiny-demo-lora.yaml").exists()
    assert main(["render", "recipes/tiny-demo-lora.yaml", "--out", str(out), "--backend", "mindformers"]) == 2
    assert "already exists" in capsys.readouterr().err
