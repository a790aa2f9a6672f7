"""Make tests/fixtures/mindspeed_llm: tiny checkpoints written by MindSpeed-LLM's own converter, both ways.

    .venv/bin/python scripts/mindspeed_llm/make_fixtures.py MINDSPEED_LLM_CHECKOUT [--python MSLLM_PYTHON]
        [--commit SHA] [--out DIR]

MSLLM_PYTHON: an interpreter with torch, safetensors, numpy and tqdm for the converter (default: this one).
Writes the HF sources (made here, seeded), MindSpeed-LLM's hf->mg output of each (``convert_ckpt_v2.py``
through ``run_converter.py``), and MindSpeed-LLM's mg->hf output of checkpoints tunebridge writes from those
sources (base, and base + a LoRA adapter merged by ``--lora-load``), with ``manifest.json``: every case's
command and the SHA-256 of each tunebridge-written rank file the converter read, so the tests notice when
tunebridge's output changes under them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tunebridge.converters.adapters import convert_adapter  # noqa: E402
from tunebridge.converters.checkpoint import convert  # noqa: E402
from tunebridge.model.dialects import HF  # noqa: E402
from tunebridge.model.spec import ModelSpec  # noqa: E402
from tunebridge.model.partition import parse_layer_list  # noqa: E402

RUNNER = Path(__file__).with_name("run_converter.py")
# Small enough to commit, shaped like the real problems: GQA, qkv bias, an odd vocabulary over tp 2, q/k norms
# with a head size of its own (Qwen3), routed experts over ep ranks (Qwen3-MoE). New models go last: each
# model's seed is its position.
MODELS = {
    "llama-gqa": ModelSpec("llama-gqa", "llama", vocab_size=64, hidden_size=8, num_layers=4, num_heads=4,
                           num_kv_heads=2, ffn_hidden_size=16, norm_eps=1e-5, max_position_embeddings=128,
                           bos_token_id=1, eos_token_id=2),
    "qwen2": ModelSpec("qwen2", "qwen2", vocab_size=64, hidden_size=8, num_layers=4, num_heads=4, num_kv_heads=2,
                       ffn_hidden_size=16, qkv_bias=True, rope_theta=1000000.0, norm_eps=1e-6,
                       max_position_embeddings=128, bos_token_id=1, eos_token_id=2),
    "llama-vocab511": ModelSpec("llama-vocab511", "llama", vocab_size=511, hidden_size=8, num_layers=2, num_heads=2,
                                num_kv_heads=2, ffn_hidden_size=16, norm_eps=1e-5, max_position_embeddings=128,
                                bos_token_id=1, eos_token_id=2),
    "qwen3": ModelSpec("qwen3", "qwen3", vocab_size=64, hidden_size=8, num_layers=4, num_heads=4, num_kv_heads=2,
                       head_dim=4, ffn_hidden_size=16, rope_theta=1000000.0, norm_eps=1e-6,
                       max_position_embeddings=128, bos_token_id=1, eos_token_id=2),
    "qwen3-moe": ModelSpec("qwen3-moe", "qwen3_moe", vocab_size=64, hidden_size=8, num_layers=4, num_heads=4,
                           num_kv_heads=2, head_dim=4, ffn_hidden_size=16, num_experts=4, experts_per_token=2,
                           moe_ffn_hidden_size=6, norm_topk_prob=True, rope_theta=1000000.0, norm_eps=1e-6,
                           max_position_embeddings=128, bos_token_id=1, eos_token_id=2),
}
HF_TO_MG = [  # (case, model, tp, pp, ep, num_layer_list)
    ("llama-gqa-tp2pp2", "llama-gqa", 2, 2, 1, None),
    ("llama-gqa-tp1pp1", "llama-gqa", 1, 1, 1, None),
    ("llama-gqa-tp2pp2-layers13", "llama-gqa", 2, 2, 1, "1,3"),
    ("qwen2-tp2pp2", "qwen2", 2, 2, 1, None),
    ("llama-vocab511-tp2", "llama-vocab511", 2, 1, 1, None),
    ("qwen3-tp2pp2", "qwen3", 2, 2, 1, None),
    ("qwen3-moe-tp2pp2ep2", "qwen3-moe", 2, 2, 2, None),
    ("qwen3-moe-tp1pp1ep4", "qwen3-moe", 1, 1, 4, None),
]
MG_TO_HF = [  # (model, tp, pp, ep, num_layer_list)
    ("llama-gqa", 2, 2, 1, None), ("qwen2", 2, 2, 1, None), ("llama-gqa", 2, 2, 1, "1,3"),
    ("llama-vocab511", 1, 1, 1, None), ("qwen3", 2, 2, 1, None), ("qwen3-moe", 2, 2, 2, None),
    ("qwen3-moe", 1, 2, 4, None),
]
LORA = {"rank": 2, "alpha": 4, "model": "llama-gqa", "tp": 2, "pp": 2}
LORA_TARGETS = ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]


def dyadic(shape: tuple[int, ...], g: torch.Generator, denominator: int = 16) -> torch.Tensor:
    """Values k / denominator, |k| <= 8: products and short sums of them are exact in fp32, so a LoRA merge
    gives the same bits whatever the order of its arithmetic."""
    return torch.randint(-8, 9, shape, generator=g).float() / denominator


def write_model(spec: ModelSpec, out: Path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for part, layer in spec.tensors():
        rule = HF.rule_for_part(part, spec)
        shape = spec.shape(part)
        value = 1 + torch.randn(shape, generator=g) * 0.1 if part.endswith("norm") else torch.randn(shape, generator=g) * 0.1
        if rule.per_expert:  # one HF tensor per expert, row e of the canonical stack
            tensors.update({rule.format(layer, e): value[e].clone() for e in range(spec.num_experts)})
        else:
            tensors[rule.format(layer)] = value
    out.mkdir(parents=True)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(spec.to_hf_config(), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(spec.to_generation_config(), indent=2) + "\n")


def write_peft_adapter(spec: ModelSpec, out: Path, rank: int, alpha: int, seed: int) -> None:
    """A PEFT adapter on all seven projections that MindSpeed-LLM's fused LoRA can hold exactly: q, k, v share one
    A, gate and up share one A."""
    g = torch.Generator().manual_seed(seed)
    shared = {"q": "qkv", "k": "qkv", "v": "qkv", "gate": "fc1", "up": "fc1", "o": "o", "down": "down"}
    tensors = {}
    for i in range(spec.num_layers):
        a_of = {}
        for p in ("q", "k", "v", "o", "gate", "up", "down"):
            out_dim, in_dim = spec.shape(p)
            a_of.setdefault(shared[p], dyadic((rank, in_dim), g))
            a_name, b_name = HF.lora_names(HF.lora_module_for(p), i)
            tensors[a_name] = a_of[shared[p]].clone()
            tensors[b_name] = dyadic((out_dim, rank), g)
    out.mkdir(parents=True)
    save_file(tensors, out / "adapter_model.safetensors", metadata={"format": "pt"})
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    (out / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
         "bias": "none", "target_modules": targets, "fan_in_fan_out": False, "inference_mode": True}, indent=2) + "\n")


def _model_type_hf(model: str) -> str:
    return MODELS[model].family_record.conversions["master"].hf2mcore.model_type_hf


def run_converter(python: str, checkout: Path, args: list[str], out: Path, labels: dict[str, str] | None = None) -> str:
    """Run the converter in ``out`` (paths inside it are given relative to it, and so stored in its ``args``);
    return the command as the manifest shows it, ``labels`` naming the temporary paths."""
    subprocess.run([python, str(RUNNER.resolve()), str(checkout.resolve()), "--", *args], check=True, cwd=out,
                   stdout=subprocess.DEVNULL)
    text = " ".join(["python", "scripts/mindspeed_llm/run_converter.py", "$MINDSPEED_LLM_HOME", "--", *args])
    for path, label in (labels or {}).items():
        text = text.replace(path, label)
    return text


def rank_file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("model_optim_rng.pt"))}


def checkout_commit(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        sys.exit(f"{checkout} is not a git work tree: pass --commit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--python", default=sys.executable, help="interpreter for MindSpeed-LLM's converter")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "mindspeed_llm")
    ap.add_argument("--commit", help="the checkout's commit, when it is not a git work tree (an extracted archive)")
    args = ap.parse_args()
    commit = args.commit or checkout_commit(args.checkout)
    out: Path = args.out
    for made in ("hf", "hf_to_mg", "mg_to_hf"):  # README.md stays
        shutil.rmtree(out / made, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"hf_to_mg": {}, "mg_to_hf": {}}
    for seed, (name, spec) in enumerate(MODELS.items()):
        write_model(spec, out / "hf" / name, seed)
    write_peft_adapter(MODELS[LORA["model"]], out / "hf" / "lora-peft", LORA["rank"], LORA["alpha"], seed=100)

    for case, model, tp, pp, ep, layers in HF_TO_MG:
        cmd = ["--load-model-type", "hf", "--save-model-type", "mg", "--model-type-hf",
               _model_type_hf(model), "--target-tensor-parallel-size", str(tp), "--target-pipeline-parallel-size", str(pp),
               *(["--target-expert-parallel-size", str(ep)] if ep > 1 else []),
               *(["--num-layer-list", layers] if layers else []),
               "--load-dir", f"hf/{model}", "--save-dir", f"hf_to_mg/{case}"]
        manifest["hf_to_mg"][case] = {"model": model, "tp": tp, "pp": pp, "ep": ep, "num_layer_list": layers,
                                      "command": run_converter(args.python, args.checkout, cmd, out)}

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for model, tp, pp, ep, layers in MG_TO_HF:
            case = (f"{model}-tp{tp}pp{pp}" + (f"ep{ep}" if ep > 1 else "")
                    + (f"-layers{layers.replace(',', '')}" if layers else ""))
            mc = scratch / f"{case}-mcore"
            convert(out / "hf" / model, mc, "hf", "mcore", tp=tp, pp=pp, ep=ep, progress=False,
                    num_layer_list=parse_layer_list(layers))
            cmd = ["--load-model-type", "mg", "--save-model-type", "hf", "--model-type-hf",
                   _model_type_hf(model), "--load-dir", str(mc),
                   "--save-dir", f"mg_to_hf/{case}", "--hf-cfg-dir", f"hf/{model}"]
            manifest["mg_to_hf"][case] = {
                "model": model, "tp": tp, "pp": pp, "ep": ep, "num_layer_list": layers, "lora": False,
                "tunebridge_rank_files": rank_file_hashes(mc),
                "command": run_converter(args.python, args.checkout, cmd, out, {str(mc): f"<tunebridge mcore of {model}>"})}
        model, tp, pp = LORA["model"], LORA["tp"], LORA["pp"]
        mc, lora_mc = scratch / f"{model}-tp{tp}pp{pp}-mcore", scratch / "lora-mcore"
        convert_adapter(out / "hf" / "lora-peft", lora_mc, "peft", "mcore", MODELS[model], tp=tp, pp=pp)
        case = f"{model}-lora-tp{tp}pp{pp}"
        cmd = ["--load-model-type", "mg", "--save-model-type", "hf", "--model-type-hf", _model_type_hf(model),
               "--load-dir", str(mc), "--lora-load", str(lora_mc), "--lora-r", str(LORA["rank"]),
               "--lora-alpha", str(LORA["alpha"]), "--lora-target-modules", *LORA_TARGETS,
               "--save-dir", f"mg_to_hf/{case}", "--hf-cfg-dir", f"hf/{model}"]
        shown = run_converter(args.python, args.checkout, cmd, out, {
            str(mc): f"<tunebridge mcore of {model}>", str(lora_mc): "<tunebridge mcore of hf/lora-peft>"})
        manifest["mg_to_hf"][case] = {
            "model": model, "tp": tp, "pp": pp, "ep": 1, "lora": True, "adapter": "hf/lora-peft",
            "tunebridge_rank_files": rank_file_hashes(mc), "tunebridge_lora_rank_files": rank_file_hashes(lora_mc),
            "command": shown}
    manifest["mindspeed_llm_commit"] = commit
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
