"""Checkpoints through MindSpeed-LLM's own converter (convert_ckpt_v2.py), both ways.

The fixtures (tests/fixtures/mindspeed_llm, README.md there) were written by MindSpeed-LLM's converter:
hf->mg of HF sources, and mg->hf of the mcore checkpoints tunebridge writes from them (LoRA merged by its
``--lora-load``). With ``MINDSPEED_LLM_HOME`` set to a checkout, the last tests run that converter here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunebridge.converters.adapters import convert_adapter
from tunebridge.converters.checkpoint import convert
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.converters.merge import merge_lora
from tunebridge.model.spec import ModelSpec

from .test_convert import same_tensors

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "mindspeed_llm"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
REGENERATE = "tunebridge's mcore output changed: regenerate the fixtures (tests/fixtures/mindspeed_llm/README.md)"


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("model_optim_rng.pt"))}


@pytest.mark.parametrize("case", sorted(MANIFEST["hf_to_mg"]))
def test_tunebridge_reads_mindspeed_llm_output_bit_exact(tmp_path, case):
    """No --hf-config: the model comes from the args MindSpeed-LLM stored (HF-style fields); its state dicts
    are defaultdicts; vocab 511 over tp 2 is stored as 256 + 255 rows."""
    entry = MANIFEST["hf_to_mg"][case]
    mcore = FIXTURES / "hf_to_mg" / case
    source = FIXTURES / "hf" / entry["model"]
    convert(mcore, tmp_path / "hf", "mcore", "hf", progress=False)
    assert same_tensors(source, tmp_path / "hf")
    expected = ModelSpec.from_hf_config(source)
    got = ModelSpec.from_hf_config(tmp_path / "hf")
    for field in ("family", "num_kv_heads", "head_dim", "qkv_bias", "o_bias", "vocab_size", "tied_embeddings",
                  "num_experts", "experts_per_token", "moe_ffn_hidden_size", "norm_topk_prob"):
        assert getattr(got, field) == getattr(expected, field), field
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text()) == expected.to_generation_config()


# the odd vocabulary aside: MindSpeed-LLM keeps its 511 rows (256 + 255), tunebridge pads to 512 as Megatron's
# training does (the README beside the fixtures)
@pytest.mark.parametrize("case", sorted(c for c, e in MANIFEST["hf_to_mg"].items() if e["model"] != "llama-vocab511"))
def test_tunebridge_writes_the_rank_files_mindspeed_llm_writes(tmp_path, case):
    """Same source, same tp / pp / ep: the same rank directories (mp_rank_TT[_PPP][_EEE]) holding the same
    tensors under the same names (each ep rank its experts as local_experts 0..), bit for bit."""
    entry = MANIFEST["hf_to_mg"][case]
    layers = [int(n) for n in entry["num_layer_list"].split(",")] if entry["num_layer_list"] else None
    convert(FIXTURES / "hf" / entry["model"], tmp_path / "mc", "hf", "mcore", tp=entry["tp"], pp=entry["pp"],
            ep=entry["ep"], num_layer_list=layers, make_vocab_size_divisible_by=1, progress=False)
    theirs, ours = FIXTURES / "hf_to_mg" / case, tmp_path / "mc"
    assert sorted(hashes(theirs)) == sorted(hashes(ours))
    for rank_file in hashes(theirs):
        a = mcore_fmt.load_rank_file(theirs / rank_file)["model"]
        b = mcore_fmt.load_rank_file(ours / rank_file)["model"]
        named = {k for k, v in a.items() if isinstance(v, torch.Tensor)}
        assert named == {k for k, v in b.items() if isinstance(v, torch.Tensor)}, rank_file
        assert all(torch.equal(a[k], b[k]) for k in named), rank_file


def test_uneven_vocab_shards_are_read():
    layout = mcore_fmt.McoreLayout(FIXTURES / "hf_to_mg" / "llama-vocab511-tp2")
    rows = [mcore_fmt.load_rank_file(layout.file(t, 0))["model"]["embedding.word_embeddings.weight"].shape[0]
            for t in range(2)]
    assert rows == [256, 255]


@pytest.mark.parametrize("case", sorted(c for c, e in MANIFEST["mg_to_hf"].items() if not e["lora"]))
def test_mindspeed_llm_reads_tunebridge_output_bit_exact(tmp_path, case):
    """The committed HF directory is what MindSpeed-LLM's mg->hf made of tunebridge's mcore, which tunebridge
    still writes byte for byte."""
    entry = MANIFEST["mg_to_hf"][case]
    source = FIXTURES / "hf" / entry["model"]
    layers = [int(n) for n in entry["num_layer_list"].split(",")] if entry["num_layer_list"] else None
    convert(source, tmp_path / "mc", "hf", "mcore", tp=entry["tp"], pp=entry["pp"], ep=entry["ep"],
            num_layer_list=layers, progress=False)
    assert hashes(tmp_path / "mc") == entry["tunebridge_rank_files"], REGENERATE
    assert same_tensors(source, FIXTURES / "mg_to_hf" / case)


def test_mindspeed_llm_merges_tunebridge_lora_bit_exact(tmp_path):
    """MindSpeed-LLM's --lora-load merge of tunebridge's base + LoRA mcore equals tunebridge's own merge of the
    PEFT adapter into the HF source (the adapter's values are exact in fp32, so any summation order agrees)."""
    case, entry = next((c, e) for c, e in MANIFEST["mg_to_hf"].items() if e["lora"])
    source, adapter = FIXTURES / "hf" / entry["model"], FIXTURES / entry["adapter"]
    spec = ModelSpec.from_hf_config(source)
    convert(source, tmp_path / "mc", "hf", "mcore", tp=entry["tp"], pp=entry["pp"], progress=False)
    convert_adapter(adapter, tmp_path / "lora", "peft", "mcore", spec, tp=entry["tp"], pp=entry["pp"])
    assert hashes(tmp_path / "mc") == entry["tunebridge_rank_files"], REGENERATE
    assert hashes(tmp_path / "lora") == entry["tunebridge_lora_rank_files"], REGENERATE
    merge_lora(source, adapter, tmp_path / "merged", progress=False)
    assert same_tensors(tmp_path / "merged", FIXTURES / "mg_to_hf" / case)
    assert not same_tensors(source, FIXTURES / "mg_to_hf" / case)  # the adapter did change the weights


def test_written_args_are_what_both_loaders_read():
    """MindSpeed-LLM's mg->hf reads expert_model_parallel_size and, for GQA, num_key_value_heads; --model-type-hf
    follows the family; Megatron's load_args_from_checkpoint copies the Megatron fields."""
    spec = ModelSpec.from_hf_config(FIXTURES / "hf" / "qwen2")
    args = mcore_fmt.make_args(spec, 2, 2, None, 1, torch.float32)
    assert (args.expert_model_parallel_size, args.num_key_value_heads, args.num_query_groups) == (1, 2, 2)
    assert args.group_query_attention and args.add_qkv_bias and args.model_type_hf == "qwen25"
    assert mcore_fmt.make_args(ModelSpec.from_hf_config(FIXTURES / "hf" / "llama-gqa"), 1, 1, None, 1,
                               torch.float32).model_type_hf == "llama2"
    back = mcore_fmt.spec_from_args(args, "qwen2")
    assert (back.family, back.num_kv_heads, back.qkv_bias) == ("qwen2", 2, True)


# --- the real converter, when a checkout is at hand -------------------------------------------------------------

HOME = os.environ.get("MINDSPEED_LLM_HOME")
real = pytest.mark.skipif(not HOME, reason="MINDSPEED_LLM_HOME (a MindSpeed-LLM checkout) not set")


def run_mindspeed_llm(*args: str) -> None:
    python = os.environ.get("MINDSPEED_LLM_PYTHON", sys.executable)
    done = subprocess.run([python, str(REPO / "scripts" / "mindspeed_llm" / "run_converter.py"), HOME, "--", *args],
                          capture_output=True, text=True)
    if "argument --model-type-hf: invalid choice" in done.stderr:
        # 2.3.0's convert_ckpt_v2.py knows only the newer families; it converts Llama and Qwen2.5 with
        # convert_ckpt.py, which builds Megatron models on an NPU (the family modules record which per version)
        pytest.skip(f"this checkout's convert_ckpt_v2.py has no --model-type-hf {args[args.index('--model-type-hf') + 1]}")
    assert done.returncode == 0, done.stderr[-3000:]


@real
@pytest.mark.parametrize("model,model_type_hf,ep", [("llama-gqa", "llama2", 1), ("qwen2", "qwen25", 1),
                                                    ("qwen3", "qwen3", 1), ("qwen3-moe", "qwen3-moe", 2)])
def test_real_converter_both_ways(tmp_path, model, model_type_hf, ep):
    source = FIXTURES / "hf" / model
    run_mindspeed_llm("--load-model-type", "hf", "--save-model-type", "mg", "--model-type-hf", model_type_hf,
                      "--target-tensor-parallel-size", "2", "--target-pipeline-parallel-size", "2",
                      "--target-expert-parallel-size", str(ep),
                      "--load-dir", str(source), "--save-dir", str(tmp_path / "theirs"))
    # the model from the source's config: 2.3.0 stores args without ffn_hidden_size (and a MoE's router top-k
    # and expert size); master's args alone suffice (test_tunebridge_reads_mindspeed_llm_output_bit_exact)
    convert(tmp_path / "theirs", tmp_path / "read", "mcore", "hf", spec=ModelSpec.from_hf_config(source),
            progress=False)
    assert same_tensors(source, tmp_path / "read")
    convert(source, tmp_path / "ours", "hf", "mcore", tp=2, pp=2, ep=ep, progress=False)
    run_mindspeed_llm("--load-model-type", "mg", "--save-model-type", "hf", "--model-type-hf", model_type_hf,
                      "--load-dir", str(tmp_path / "ours"), "--save-dir", str(tmp_path / "back"), "--hf-cfg-dir", str(source))
    if not (tmp_path / "back" / "config.json").exists():  # 2.3.0 writes the weights only; master copies the config
        shutil.copy(source / "config.json", tmp_path / "back")
    assert same_tensors(source, tmp_path / "back")


@real
def test_real_converter_merges_tunebridge_lora(tmp_path):
    source, adapter = FIXTURES / "hf" / "llama-gqa", FIXTURES / "hf" / "lora-peft"
    convert(source, tmp_path / "mc", "hf", "mcore", tp=2, pp=2, progress=False)
    convert_adapter(adapter, tmp_path / "lora", "peft", "mcore", ModelSpec.from_hf_config(source), tp=2, pp=2)
    run_mindspeed_llm("--load-model-type", "mg", "--save-model-type", "hf", "--model-type-hf", "llama2",
                      "--load-dir", str(tmp_path / "mc"), "--lora-load", str(tmp_path / "lora"), "--lora-r", "2",
                      "--lora-alpha", "4", "--lora-target-modules", "linear_qkv", "linear_proj", "linear_fc1",
                      "linear_fc2", "--save-dir", str(tmp_path / "back"), "--hf-cfg-dir", str(source))
    merge_lora(source, adapter, tmp_path / "merged", progress=False)
    assert same_tensors(tmp_path / "merged", tmp_path / "back")
    assert not same_tensors(source, tmp_path / "back")
