"""Counted parameters equal what megatron-core instantiates, per TP/PP/EP rank (gloo processes on CPU)."""
from __future__ import annotations

import pytest

from tunebridge.converters.checkpoint import convert
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.model.accounting import count, mcore_rank_params
from tunebridge.model.catalogue import get_model
from tunebridge.model.layout import padded_vocab_size, stage_layers
from tunebridge.backends.mindspeed_llm.megatron.census import census_many
from tunebridge.backends.mindspeed_llm.megatron.launch import run
from tunebridge.backends.mindspeed_llm.megatron.model import stage_tensor_names

from .families import TINY, TINY_MOE
from .test_convert import make_hf

MODULE_SETS = [["linear_qkv"], ["linear_qkv", "linear_proj"], ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]]
WORLDS = [(1, 1, None), (2, 1, None), (1, 2, [1, 3]), (2, 2, [1, 3])]


def _cases(tp: int):
    cases = []
    for name in TINY + TINY_MOE:  # a mixture of experts: linear_fc1 / linear_fc2 are every local expert's
        spec = get_model(name)
        if spec.num_kv_heads % tp:
            continue
        cases.append(dict(spec=spec, lora_modules=None))
        for modules in MODULE_SETS:
            for rank in (4, 8):
                cases.append(dict(spec=spec, lora_modules=modules, rank=rank))
    return cases


@pytest.fixture(scope="module", params=WORLDS, ids=lambda w: f"tp{w[0]}-pp{w[1]}")
def world(request):
    tp, pp, layers = request.param
    cases = _cases(tp)
    for c in cases:
        c["num_layer_list"] = layers
    ranks = run(census_many, tp=tp, pp=pp, args=(cases,))
    return tp, pp, layers, cases, ranks


def test_lora_and_full_counts_per_rank(world):
    tp, pp, layers, cases, ranks = world
    checked = 0
    for i, case in enumerate(cases):
        spec = case["spec"]
        if case["lora_modules"]:
            report = count(spec, "mindspeed-llm", rank=case["rank"], targets=[], native_targets=case["lora_modules"],
                           tp=tp, pp=pp, num_layer_list=layers)
        else:
            report = count(spec, "mindspeed-llm", method="full", tp=tp, pp=pp, num_layer_list=layers)
        expected = {(r["pp_rank"], r["tp_rank"]): r["trainable"] for r in report.per_rank_trainable} \
            if report.per_rank_trainable else {(0, 0): report.trainable_params}
        got = {(r[i]["pp_rank"], r[i]["tp_rank"]): r[i]["trainable"] for r in ranks}
        assert got == expected, (spec.name, case["lora_modules"])
        checked += 1
    assert checked == len(cases) >= 13


def test_tensor_names_and_shapes_equal_the_mcore_dialect(world):
    tp, pp, layers, cases, ranks = world
    for i, case in enumerate(cases):
        if case["lora_modules"]:
            continue
        spec = case["spec"]
        vocab = padded_vocab_size(spec.vocab_size, tp)
        for r in ranks:
            shapes = r[i]["shapes"]
            assert sorted(shapes) == sorted(stage_tensor_names(spec, r[i]["pp_rank"], pp, layers)), spec.name
            n_layers = len(stage_layers(spec.num_layers, pp, layers)[r[i]["pp_rank"]])
            assert sum(k.startswith("decoder.layers.") and k.endswith("input_layernorm.weight") for k in shapes) \
                == n_layers
            qkv = shapes.get("decoder.layers.0.self_attention.linear_qkv.weight")
            assert qkv == [(spec.q_size + 2 * spec.kv_size) // tp, spec.hidden_size]
            mlp, ffn = ("mlp.experts.local_experts.7", spec.moe_ffn_hidden_size) if spec.num_experts \
                else ("mlp", spec.ffn_hidden_size)
            assert shapes[f"decoder.layers.0.{mlp}.linear_fc1.weight"] == [2 * ffn // tp, spec.hidden_size]
            assert shapes[f"decoder.layers.0.{mlp}.linear_fc2.weight"] == [spec.hidden_size, ffn // tp]
            if "embedding.word_embeddings.weight" in shapes:
                assert shapes["embedding.word_embeddings.weight"] == [vocab // tp, spec.hidden_size]


def test_lora_tensor_names(world):
    tp, pp, layers, cases, ranks = world
    case_i = next(i for i, c in enumerate(cases) if c["lora_modules"] and len(c["lora_modules"]) == 4)
    spec = cases[case_i]["spec"]
    shapes = ranks[0][case_i]["shapes"]
    r = cases[case_i]["rank"]
    prefix = "decoder.layers.0.self_attention.linear_qkv"
    assert shapes[f"{prefix}.base_layer.weight"] == [(spec.q_size + 2 * spec.kv_size) // tp, spec.hidden_size]
    assert shapes[f"{prefix}.lora_A.default.weight"] == [r, spec.hidden_size]            # replicated
    assert shapes[f"{prefix}.lora_B.default.weight"] == [(spec.q_size + 2 * spec.kv_size) // tp, r]  # split
    proj = "decoder.layers.0.self_attention.linear_proj"
    assert shapes[f"{proj}.lora_A.default.weight"] == [r, spec.q_size // tp]             # split
    assert shapes[f"{proj}.lora_B.default.weight"] == [spec.hidden_size, r]              # replicated


def test_lora_on_local_experts_is_a_pair_per_expert(world):
    """MindSpeed-LLM's linear_fc1 / linear_fc2 targets wrap each of a mixture of experts' local experts."""
    tp, pp, layers, cases, ranks = world
    case_i = next(i for i, c in enumerate(cases) if c["spec"].num_experts and c["lora_modules"]
                  and len(c["lora_modules"]) == 4)
    spec, r = cases[case_i]["spec"], cases[case_i]["rank"]
    shapes = ranks[0][case_i]["shapes"]
    lora = [k for k in shapes if ".lora_" in k and k.startswith("decoder.layers.0.mlp.")]
    assert len(lora) == 2 * 2 * spec.num_experts  # (A, B) on linear_fc1 and linear_fc2 of every expert
    fc1, fc2 = (f"decoder.layers.0.mlp.experts.local_experts.5.{m}" for m in ("linear_fc1", "linear_fc2"))
    assert shapes[f"{fc1}.lora_A.default.weight"] == [r, spec.hidden_size]
    assert shapes[f"{fc1}.lora_B.default.weight"] == [2 * spec.moe_ffn_hidden_size // tp, r]
    assert shapes[f"{fc2}.lora_A.default.weight"] == [r, spec.moe_ffn_hidden_size // tp]
    assert shapes[f"{fc2}.lora_B.default.weight"] == [spec.hidden_size, r]
    assert "decoder.layers.0.mlp.router.weight" in shapes  # the router is never wrapped


# --- a mixture of experts over expert-parallel ranks (world tp x pp x ep, megatron-core builds each ep rank's experts)

EP_WORLDS = [(1, 1, 2), (2, 1, 2), (1, 2, 2)]


@pytest.fixture(scope="module", params=EP_WORLDS, ids=lambda w: f"tp{w[0]}-pp{w[1]}-ep{w[2]}")
def ep_world(request, tmp_path_factory):
    tp, pp, ep = request.param
    spec = get_model(TINY_MOE[0])
    cases = [dict(spec=spec, lora_modules=None)] + [dict(spec=spec, lora_modules=m, rank=8) for m in MODULE_SETS]
    ranks = run(census_many, tp=tp, pp=pp, ep=ep, args=(cases,))
    hf = make_hf(tmp_path_factory.mktemp("ep") / "hf", spec)
    convert(hf, hf.parent / "mc", "hf", "mcore", tp=tp, pp=pp, ep=ep, progress=False)
    return tp, pp, ep, cases, ranks, mcore_fmt.McoreLayout(hf.parent / "mc")


def _key(r: dict) -> tuple[int, int, int]:
    return r["pp_rank"], r["tp_rank"], r.get("ep_rank", 0)


def test_expert_parallel_counts_per_rank(ep_world):
    """Full fine-tuning: each (tp, pp, ep) rank's parameters equal mcore_rank_params; LoRA: count(..., ep=)."""
    tp, pp, ep, cases, ranks, _ = ep_world
    assert sorted(_key(r[0]) for r in ranks) == sorted(_key(r) for r in mcore_rank_params(cases[0]["spec"], tp, pp, ep))
    for i, case in enumerate(cases):
        spec = case["spec"]
        if case["lora_modules"]:
            report = count(spec, "mindspeed-llm", rank=case["rank"], targets=[], native_targets=case["lora_modules"],
                           tp=tp, pp=pp, ep=ep)
            expected = {_key(r): r["trainable"] for r in report.per_rank_trainable}
        else:
            expected = {_key(r): r["trainable"] for r in mcore_rank_params(spec, tp, pp, ep)}
            assert {_key(r[i]): r[i]["total"] for r in ranks} == expected
        assert {_key(r[i]): r[i]["trainable"] for r in ranks} == expected, case["lora_modules"]


def test_expert_parallel_ranks_hold_what_convert_writes_there(ep_world):
    """Each rank's tensor names and shapes equal its rank file from `convert --ep`, and megatron-core's ep rank e
    holds global experts e * E/ep, ... as local experts 0, 1, ..., as the converter places them."""
    tp, pp, ep, cases, ranks, layout = ep_world
    spec = cases[0]["spec"]
    per_rank = spec.num_experts // ep
    for r in ranks:
        built = r[0]
        saved = mcore_fmt.load_rank_file(layout.file(built["tp_rank"], built["pp_rank"], built["ep_rank"]))["model"]
        assert built["shapes"] == {k: list(v.shape) for k, v in saved.items()}
        assert built["experts"] == list(range(built["ep_rank"] * per_rank, (built["ep_rank"] + 1) * per_rank))
