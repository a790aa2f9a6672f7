"""Mixture-of-experts models (Qwen3-MoE): what tunebridge counts exactly (LoRA on attention and experts against PEFT in
test_accounting_peft), its conversion HF <-> mcore over tp, pp and ep (bit-exact, proven by logits through
megatron-core), and what it still refuses, saying why (tp > 1 training, MindFormers); its training is in
test_families_run, its MindSpeed-LLM scripts in test_moe_render."""
from __future__ import annotations

import pytest
import torch

from tunebridge.backends.mindspeed_llm.megatron.model import stage_tensor_names
from tunebridge.model.accounting import count, mcore_rank_params
from tunebridge.model.catalogue import get_model
from tunebridge.converters.checkpoint import convert
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.converters.formats.hf import HFReader
from tunebridge.errors import TunebridgeError
from tunebridge.model.dialects import HF, MCORE
from tunebridge.model.spec import ModelSpec
from tunebridge.backends.stacks import RENDERABLE, stacks_for
from tunebridge.parity.logits import hf_logits, mcore_logits_from_dir, verify

from .families import TINY_MOE
from .test_accounting_peft import hf_model
from .test_convert import make_hf, same_tensors


def test_qwen3_30b_a3b_count():
    spec = get_model("qwen3-30b-a3b")
    assert spec.total_params() == 30_532_122_624  # transformers' Qwen3MoeForCausalLM (test_accounting_peft)
    assert spec.expert_params() == 3 * 768 * 2048
    assert spec.layer_params() == (2048 * (4096 + 2 * 512) + 4096 * 2048 + 2 * 128 + 2 * 2048 + 128 * 2048
                                   + 128 * spec.expert_params())


@pytest.mark.parametrize("name", TINY_MOE)
def test_transformers_builds_the_experts_the_spec_counts(name):
    spec = get_model(name)
    model = hf_model(spec, "meta")
    assert type(model).__name__ == spec.family_record.hf_architecture
    experts = model.model.layers[0].mlp.experts
    assert sum(p.numel() for p in experts.parameters()) == spec.num_experts * spec.expert_params()
    assert model.config.num_experts_per_tok == spec.experts_per_token and model.config.norm_topk_prob


def test_lora_on_experts_is_a_pair_per_expert():
    """gate, up and down of a mixture of experts are its experts': each expert gets its own (A, B) (PEFT's
    ParamWrapper on transformers' fused expert tensors, MindSpeed-LLM's linear_fc1 / linear_fc2 on each local expert);
    the counts equal PEFT's and megatron-core's (test_accounting_peft, test_accounting_megatron)."""
    spec = get_model("tiny-qwen3-moe")  # 4 layers, hidden 64, q 128, 8 experts of size 48
    o, down, gate_up = 4 * 8 * (128 + 64), 4 * 8 * 8 * (48 + 64), 4 * 8 * 8 * (64 + 2 * 48)
    assert (o, down, gate_up) == (6_144, 28_672, 40_960)
    for backend in ("torch", "mindspeed-llm"):
        report = count(spec, backend, rank=8, targets=["o", "down"])
        assert (report.trainable_params, report.exact) == (o + down, True)
        assert count(spec, backend, rank=8, targets=["o", "gate", "up", "down"]).trainable_params == o + down + gate_up
    gate = count(spec, "torch", rank=8, targets=["gate"])  # transformers fuses gate and up: PEFT adapts both
    assert (gate.trainable_params, gate.exact, gate.native_targets) == (gate_up, False, ["gate_up_proj"])
    assert "which also adapts ['expert_up']" in gate.note
    assert count(spec, "mindspeed-llm", rank=8, targets=["down"], tp=2).per_rank_trainable == [
        {"pp_rank": 0, "tp_rank": t, "layers": 4, "trainable": 4 * 8 * 8 * (48 // 2 + 64)} for t in range(2)]


def test_lora_dropout_on_experts_is_refused_saying_why(moe_hf):
    from tunebridge.backends.pytorch import build_model
    from tunebridge.train.config import TrainConfig

    lora = {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": [],
            "target_parameters": ["mlp.experts.down_proj"]}
    with pytest.raises(TunebridgeError, match=r"^lora.dropout 0.1: PEFT adapts a mixture of experts' fused expert "
                                              r"tensors \(target_parameters \['mlp.experts.down_proj'\]\) without "
                                              r"dropout only$"):
        build_model(moe_hf, TrainConfig(global_batch_size=1, micro_batch_size=1, lr=1e-3, lora=lora),
                    torch.device("cpu"))


@pytest.mark.parametrize("tp,pp", [(1, 1), (2, 2)])
def test_an_expert_adapter_goes_peft_mcore_peft_bit_exact(moe_hf, tmp_path, tp, pp):
    """A PEFT adapter on o, the experts' gate/up and down (B random, so that a misplaced expert shows) to
    MindSpeed-LLM's per-expert pairs and back; expert e's pair is PEFT's rows e r .. (e + 1) r of A and columns
    e, e + E, ... of B."""
    from safetensors.torch import load_file, save_file

    from tunebridge.backends.pytorch import build_model
    from tunebridge.converters.adapters import convert_adapter
    from tunebridge.train.config import TrainConfig

    lora = {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["o_proj"],
            "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]}
    model = build_model(moe_hf, TrainConfig(global_batch_size=1, micro_batch_size=1, lr=1e-3, lora=lora),
                        torch.device("cpu"))
    model.save_pretrained(tmp_path / "peft")
    weights = tmp_path / "peft" / "adapter_model.safetensors"
    state = load_file(weights)
    torch.manual_seed(1)
    save_file({k: torch.randn_like(v) for k, v in state.items()}, weights)
    spec = get_model("tiny-qwen3-moe")
    convert_adapter(tmp_path / "peft", tmp_path / "mc", "peft", "mcore", spec, tp=tp, pp=pp)
    convert_adapter(tmp_path / "mc", tmp_path / "back", "mcore", "peft", spec)
    original, back = load_file(weights), load_file(tmp_path / "back" / "adapter_model.safetensors")
    assert sorted(back) == sorted(original) and all(torch.equal(back[k], original[k]) for k in original)
    assert len([k for k in back if ".mlp.experts." in k]) == 4 * 2 * 2  # per layer: gate_up and down, A and B
    # layer 1 (stage 0 at pp 2: layers 0, 1), expert 3's down pair on tp rank 0
    rank_file = mcore_fmt.load_rank_file(mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0))["model"]
    fc2 = "decoder.layers.1.mlp.experts.local_experts.3.linear_fc2"
    peft_down = "base_model.model.model.layers.1.mlp.experts"  # down_proj: the outer of the two ParamWrappers
    a, b = original[f"{peft_down}.lora_A.weight"], original[f"{peft_down}.lora_B.weight"]
    assert torch.equal(rank_file[f"{fc2}.lora_A.default.weight"], a[3 * 4:4 * 4].chunk(tp, dim=1)[0])
    assert torch.equal(rank_file[f"{fc2}.lora_B.default.weight"], b[:, 3::8])


def test_stacks_that_cannot_take_it_say_why(tmp_path):
    spec = get_model("tiny-qwen3-moe")
    mindformers = f"mindformers: tiny-qwen3-moe: {spec.family_record.mindformers_missing}"
    # rendered and counted (test_moe_render) and trained (test_families_run) for MindSpeed-LLM
    assert stacks_for(spec) == (["torch", "mindspeed-llm"], [mindformers])
    assert stacks_for(spec, RENDERABLE) == (["mindspeed-llm"], [mindformers])
    with pytest.raises(TunebridgeError, match="MindFormers 1.9.0 runs Qwen3-MoE only as"):
        convert(make_hf(tmp_path / "hf", spec), tmp_path / "mf", "hf", "mindformers", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_dense_models_are_not_experts():
    spec = get_model("tiny-qwen3")
    assert not spec.num_experts and spec.has("gate") and not spec.has("router") and not spec.expert_tensors()
    with pytest.raises(ValueError, match="experts_per_token 9 is not in 1..8"):
        get_model("tiny-qwen3-moe").with_(experts_per_token=9)


def test_a_config_transformers_5_wrote_reads_back(tmp_path):
    spec = get_model("tiny-qwen3-moe")
    hf_model(spec, "meta").config.save_pretrained(tmp_path)
    assert "num_local_experts" in (tmp_path / "config.json").read_text()
    back = ModelSpec.from_hf_config(tmp_path, name=spec.name)
    assert back.to_dict() == spec.to_dict()


# --- conversion HF <-> mcore over tp, pp, ep -----------------------------------------------------------------


@pytest.fixture(scope="module")
def moe_hf(tmp_path_factory):
    return make_hf(tmp_path_factory.mktemp("moe") / "hf", "tiny-qwen3-moe")


def test_the_dialects_name_the_experts_as_the_frameworks_save_them(moe_hf):
    """HF: the hub's per-expert tensors, which transformers 5 saves (it fuses them only in memory); mcore: the
    local spec's SequentialMLP, as megatron-core 0.16.1 builds it (test_moe_logits loads them strictly)."""
    spec = get_model("tiny-qwen3-moe")
    assert sorted(HFReader(moe_hf).names()) == sorted(HF.tensor_names(spec))
    layer0 = [n for n in MCORE.tensor_names(spec, layers=range(1)) if n.startswith("decoder.layers.0.mlp.")]
    assert layer0[:3] == ["decoder.layers.0.mlp.router.weight",
                          "decoder.layers.0.mlp.experts.local_experts.0.linear_fc1.weight",
                          "decoder.layers.0.mlp.experts.local_experts.1.linear_fc1.weight"]
    assert len(layer0) == 1 + 2 * spec.num_experts
    assert spec.shape("expert_gate") == (8, 48, 64) and spec.expert_params() == 3 * 48 * 64


MOE_LAYOUTS = [(1, 1, 1), (1, 1, 2), (2, 1, 2), (1, 2, 2)]


@pytest.mark.parametrize("tp,pp,ep", MOE_LAYOUTS, ids=lambda v: str(v))
def test_moe_hf_mcore_hf_is_bit_exact(moe_hf, tmp_path, tp, pp, ep):
    spec = get_model("tiny-qwen3-moe")
    convert(moe_hf, tmp_path / "mc", "hf", "mcore", tp=tp, pp=pp, ep=ep, progress=False)
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    assert (layout.tp, layout.pp, layout.ep) == (tp, pp, ep)
    dirs = sorted(p.name for p in layout.iter_dir.iterdir())
    pp_part = ["_{:03d}".format(s) for s in range(pp)] if pp > 1 else [""]
    ep_part = ["_{:03d}".format(e) for e in range(ep)] if ep > 1 else [""]
    assert dirs == sorted(f"mp_rank_{t:02d}{a}{b}" for t in range(tp) for a in pp_part for b in ep_part)
    hf = HFReader(moe_hf)
    per_rank = spec.num_experts // ep
    counted = {(r["pp_rank"], r["tp_rank"], r.get("ep_rank", 0)): r["trainable"]
               for r in mcore_rank_params(spec, tp, pp, ep)}
    assert len(counted) == tp * pp * ep
    for t in range(tp):
        for s in range(pp):
            for e in range(ep):
                saved = mcore_fmt.load_rank_file(layout.file(t, s, e))
                assert saved["args"].expert_model_parallel_size == ep
                assert saved["args"].num_experts == 8 and saved["args"].moe_router_topk == 2
                assert saved["args"].moe_router_pre_softmax is False  # norm_topk_prob
                model = saved["model"]
                assert sorted(model) == sorted(stage_tensor_names(spec, s, pp, ep=ep))
                # per layer: 2 norms, qkv, q/k norms, proj, router and 2 tensors per local expert; embedding first,
                # final norm and output layer last
                assert len(model) == 4 // pp * (7 + 2 * per_rank) + (s == 0) + 2 * (s == pp - 1)
                assert sum(v.numel() for v in model.values()) == counted[(s, t, e)]  # accounting per rank
                # ep rank e's local expert 1 of its first layer is global expert e * per_rank + 1
                g = 2 * s if pp > 1 else 0
                fc2 = model["decoder.layers.0.mlp.experts.local_experts.1.linear_fc2.weight"]
                down = hf.get(f"model.layers.{g}.mlp.experts.{e * per_rank + 1}.down_proj.weight")
                assert torch.equal(fc2, down.chunk(tp, dim=1)[t])
                assert torch.equal(model["decoder.layers.0.mlp.router.weight"], hf.get(f"model.layers.{g}.mlp.gate.weight"))
    convert(tmp_path / "mc", tmp_path / "back", "mcore", "hf", progress=False)
    assert same_tensors(moe_hf, tmp_path / "back")


def test_expert_parallel_sizes_that_do_not_fit_are_refused(moe_hf, tmp_path):
    with pytest.raises(TunebridgeError, match="--ep 3 does not divide hf's 8 experts"):
        convert(moe_hf, tmp_path / "out", "hf", "mcore", ep=3, progress=False)
    dense = make_hf(tmp_path / "tiny-qwen3", "tiny-qwen3")
    with pytest.raises(TunebridgeError, match="--ep 2 needs a mixture of experts; tiny-qwen3 is dense"):
        convert(dense, tmp_path / "out", "hf", "mcore", ep=2, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tp,pp,ep", [(1, 1, 1), (2, 2, 2)], ids=lambda v: str(v))
def test_moe_logits_agree_through_megatron_core(moe_hf, tmp_path, tp, pp, ep):
    """transformers' Qwen3MoeForCausalLM against megatron-core's GPTModel (local spec, softmax top-k router with
    pre-softmax off) loaded strictly from the converted checkpoint; an ep checkpoint runs with its experts joined."""
    convert(moe_hf, tmp_path / "mc", "hf", "mcore", tp=tp, pp=pp, ep=ep, progress=False)
    (r,) = verify([(moe_hf, "hf"), (tmp_path / "mc", "mcore")], get_model("tiny-qwen3-moe"))
    print(f"tp={tp} pp={pp} ep={ep}: max_abs={r.max_abs:.3g} cosine={r.cosine:.12f}")
    assert r.passed, r
    assert r.max_abs < 2e-5 and r.cosine > 0.99999


def test_a_router_without_renormalised_top_k_fails_verification(moe_hf, tmp_path):
    """Megatron's pre-softmax router (softmax over all experts, top-k not renormalised) is not Qwen3-MoE's."""
    convert(moe_hf, tmp_path / "mc", "hf", "mcore", progress=False)
    spec = get_model("tiny-qwen3-moe")
    from tunebridge.parity.logits import framework_logits
    ids = torch.randint(0, spec.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    ours = framework_logits(tmp_path / "mc", "mcore", spec, ids)
    theirs = framework_logits(tmp_path / "mc", "mcore", spec.with_(norm_topk_prob=False), ids)
    assert (ours - theirs).abs().max() > 1e-3


def test_convert_cli_takes_ep(moe_hf, tmp_path, capsys):
    from tunebridge.cli import main
    assert main(["convert", str(moe_hf), str(tmp_path / "mc"), "--to", "mcore", "--tp", "2", "--ep", "4"]) == 0
    layout = mcore_fmt.McoreLayout(tmp_path / "mc")
    assert (layout.tp, layout.pp, layout.ep) == (2, 1, 4)
    assert main(["convert", str(tmp_path / "mc"), str(tmp_path / "back"), "--to", "hf"]) == 0
    assert same_tensors(moe_hf, tmp_path / "back")


def test_transformers_own_router_loss_is_never_added(moe_hf, tmp_path):
    """transformers' load-balancing loss is off even where the config asks for it (the torch train step adds
    Megatron's instead, tests/test_moe_aux.py), and megatron-core's routers take the recipe's coefficient: at 0,
    routing type none, they add nothing (z-loss unset either way)."""
    import json
    import shutil

    from tunebridge.backends.mindspeed_llm.megatron.model import transformer_config
    from tunebridge.backends.pytorch import build_model, token_losses
    from tunebridge.train.config import TrainConfig

    shutil.copytree(moe_hf, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "output_router_logits": True,
                                                             "router_aux_loss_coef": 0.5}))
    model = build_model(tmp_path / "hf", TrainConfig(global_batch_size=1, micro_batch_size=1, lr=1e-3),
                        torch.device("cpu"))
    ids = torch.arange(24).reshape(2, 12)
    out = model(input_ids=ids, labels=ids)
    loss_sum, n = token_losses(out.logits, ids)
    assert out.aux_loss is None and out.loss.item() == pytest.approx(loss_sum.item() / n, rel=1e-6)
    config = transformer_config(get_model("tiny-qwen3-moe"))
    assert config.moe_aux_loss_coeff == 0.0 and config.moe_z_loss_coeff is None
    assert config.moe_router_load_balancing_type == "none"
    config = transformer_config(get_model("tiny-qwen3-moe"), moe_aux_loss_coeff=0.01)
    assert (config.moe_router_load_balancing_type, config.moe_aux_loss_coeff) == ("aux_loss", 0.01)
    assert (config.moe_token_dispatcher_type, config.moe_expert_capacity_factor) == ("allgather", None)  # dropless


def test_megatron_core_refuses_experts_over_tp_saying_why(moe_hf, tmp_path, capsys):
    import yaml

    from tunebridge.cli import main

    from .conftest import REPO

    recipe = yaml.safe_load((REPO / "recipes" / "tiny-parity-lora.yaml").read_text())
    recipe["model"] = {"arch": "tiny-qwen3-moe", "weights": str(moe_hf)}
    recipe["parallel"].update(tp=2, sequence_parallel=True)  # without it the recipe is refused (test_moe_render)
    recipe["data"]["train"]["path"] = str(REPO / "data" / "samples" / "demo_math_train.jsonl")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["run", str(tmp_path / "recipe.yaml"), "--backend", "mindspeed-llm", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"tunebridge: error: {tmp_path / 'recipe.yaml'}: parallel.tp 2: megatron-core 0.16.1 trains a mixture of "
        "experts over tp > 1 only with sequence parallelism (its MoELayer refuses otherwise), which the CPU reference "
        "executor does not run; train tiny-qwen3-moe with tp 1 here"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tp,pp,ep", [(1, 1, 2), (2, 1, 2)], ids=lambda v: str(v))
def test_megatron_core_runs_an_ep_checkpoint_on_its_expert_parallel_ranks(moe_hf, tmp_path, tp, pp, ep):
    """Each ep rank loads its own `convert --ep` rank file (its experts only, strictly) and megatron-core dispatches the
    tokens over the ep ranks: the logits equal those of the experts joined on one rank and transformers'."""
    spec = get_model("tiny-qwen3-moe")
    convert(moe_hf, tmp_path / "mc", "hf", "mcore", tp=tp, pp=pp, ep=ep, progress=False)
    ids = torch.randint(0, spec.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    over_ep = mcore_logits_from_dir(tmp_path / "mc", ids, spec, expert_parallel=True)
    joined = mcore_logits_from_dir(tmp_path / "mc", ids, spec)
    hf = hf_logits(moe_hf, ids)
    print(f"tp={tp} ep={ep}: max |ep - joined| = {(over_ep - joined).abs().max():.3g}, "
          f"max |ep - transformers| = {(over_ep - hf).abs().max():.3g}")
    assert (over_ep - joined).abs().max() <= 1e-5
    assert (over_ep - hf).abs().max() <= 1e-5
