"""What a new user sees: progress bars that end at 100 %, tables whole when piped, outputs readable like any
directory the user makes (0755 / 0644), and no third-party noise (megatron's "Apex is not installed")."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunebridge.cli import main

REPO = Path(__file__).resolve().parent.parent
TUNEBRIDGE = [sys.executable, "-c", "import sys; from tunebridge.cli import main; sys.exit(main(sys.argv[1:]))"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("first-use")
    old = os.umask(0o022)
    try:
        assert main(["init-model", "tiny-llama", str(root / "hf")]) == 0
    finally:
        os.umask(old)
    return root


def _last_bar(err: str, label: str) -> str:
    states = [s for s in re.split(r"[\r\n]", err) if s.startswith(label)]
    assert states, err[-2000:]
    return states[-1]


@pytest.mark.parametrize("to,flags,label", [
    ("mcore", ["--tp", "2", "--pp", "2", "--num-layer-list", "1,3"], "hf -> mcore"),
    ("mindformers", [], "hf -> mindformers"),
    ("hf", ["--dtype", "bf16"], "hf -> hf"),
])
def test_conversion_progress_ends_at_100_percent(tiny, tmp_path, capsys, to, flags, label):
    assert main(["convert", str(tiny / "hf"), str(tmp_path / "out"), "--to", to, *flags]) == 0
    bar = _last_bar(capsys.readouterr().err, label)
    done, total = map(int, re.search(r"(\d+)/(\d+)", bar).groups())
    assert "100%" in bar and done == total, bar


def test_outputs_are_readable_like_the_users_own(tiny, tmp_path):
    """mkdtemp makes 0700 directories and safetensors 0600 files; outputs get the user's umask instead."""
    old = os.umask(0o022)
    try:
        assert main(["convert", str(tiny / "hf"), str(tmp_path / "mc"), "--to", "mcore"]) == 0
        assert main(["render", "recipes/tiny-demo-lora.yaml", "--out", str(tmp_path / "r")]) == 0
    finally:
        os.umask(old)
    for root in (tiny / "hf", tmp_path / "mc", tmp_path / "r"):
        for p in (root, *root.rglob("*")):
            mode = p.stat().st_mode & 0o777
            expected = 0o755 if p.is_dir() or p.suffix == ".sh" else 0o644
            assert mode == expected, f"{p}: {oct(mode)}"


def test_tables_are_whole_when_piped():
    proc = subprocess.run([*TUNEBRIDGE, "models"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stdout
    for whole in ("tiny-qwen2-tied", "llama3.1-8b", "internlm", "8,030,261,248", "494,032,768", "heads/kv",
                  "128x768 top-8", "8x48 top-2"):  # a mixture of experts: experts x size, experts per token
        assert whole in proc.stdout
    proc = subprocess.run([*TUNEBRIDGE, "params", "recipes/llama3-8b-math-lora-r8.yaml"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert "…" not in proc.stdout and "0.000424379" in proc.stdout and "PEFT trainable (percent)" in proc.stdout


def test_verify_says_what_it_does_and_keeps_megatron_quiet(tiny, tmp_path):
    assert main(["convert", str(tiny / "hf"), str(tmp_path / "mc"), "--to", "mcore", "--tp", "2"]) == 0
    proc = subprocess.run([*TUNEBRIDGE, "verify", str(tiny / "hf"), str(tmp_path / "mc")], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "verify: [1/2] logits of" in proc.stderr and "through megatron-core GPTModel" in proc.stderr
    assert "Apex" not in proc.stdout + proc.stderr and "Warning" not in proc.stdout + proc.stderr
    assert "pass" in proc.stdout


def test_a_peft_adapter_saved_as_bin_converts_like_safetensors(tiny, tmp_path):
    """PEFT's save_pretrained(safe_serialization=False) writes adapter_model.bin: read through torch's
    weights-only unpickler, it gives the same MindFormers adapter as the .safetensors one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny / "hf"),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    model.save_pretrained(tmp_path / "st")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "adapter_model.bin").exists()
    for kind in ("st", "bin"):  # the format is detected from either file
        assert main(["convert-adapter", str(tmp_path / kind), str(tmp_path / f"mf-{kind}"), "--to", "mindformers",
                     "--model", "tiny-llama"]) == 0
    assert (tmp_path / "mf-st" / "lora.ckpt").read_bytes() == (tmp_path / "mf-bin" / "lora.ckpt").read_bytes()


def test_render_says_what_a_recipe_without_training_data_lacks(tmp_path, capsys):
    assert main(["render", "recipes/internlm-7b-mmlu-lora.yaml", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "has no data.train: the MindFormers prepare_internlm-7b-mmlu-lora.sh makes the weights" in err
    assert main(["render", "recipes/llama3-8b-math-lora-r8.yaml", "--out", str(tmp_path / "l")]) == 0
    assert "no data.train" not in capsys.readouterr().err
    script = (tmp_path / "l" / "mindformers" / "prepare_llama3-8b-math-lora-r8.sh").read_text()
    assert '"$TUNEBRIDGE" data prepare "$RECIPE" --backend mindformers --tokenizer "$HF_DIR"' in script
