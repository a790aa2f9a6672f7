"""A mixture of experts (Qwen3-MoE) rendered for MindSpeed-LLM 2.3.0 and master: the expert-parallel size as a
recipe field, validated by Megatron's rules; the MoE flags of its scripts, each equal to the family's fact or the
stack's table and accepted by each version's parser record (tests/fixtures/mindspeed_llm_flags); LoRA on the
experts refused, as the accounting refuses it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebridge.backends.mindspeed_llm.render import VERSIONS
from tunebridge.backends.render import render, render_files
from tunebridge.model.accounting import mcore_rank_params
from tunebridge.model.catalogue import get_model
from tunebridge.recipe.explain import explain_rows
from tunebridge.recipe.schema import load_recipe

from .families import RECIPES
from .test_mindspeed_llm_flags import check_flags, commands, parser, record
from .test_recipe import only

RECIPE = Path("recipes/qwen3-30b-a3b-lora.yaml")
MOE = """\
name: t
model: {arch: tiny-qwen3-moe}
finetune:
  method: full
train:
  global_batch_size: 8
  micro_batch_size: 1
  lr: 1.0e-4
  dtype: DTYPE
parallel: PARALLEL
"""


def moe(parallel: str, dtype: str = "fp32", arch: str = "tiny-qwen3-moe") -> str:
    return MOE.replace("PARALLEL", parallel).replace("DTYPE", dtype).replace("tiny-qwen3-moe", arch)


@pytest.mark.parametrize(
    "parallel,dtype,arch,field,message",
    [
        ("{ep: 3}", "fp32", "tiny-qwen3-moe", "parallel.ep", "ep 3 does not divide tiny-qwen3-moe's 8 experts"),
        ("{ep: 2, dp: 2}", "fp32", "tiny-qwen3", "parallel.ep", "ep 2 needs a mixture of experts; tiny-qwen3 is dense"),
        ("{ep: 2, dp: 1}", "fp32", "tiny-qwen3-moe", "parallel.ep",
         "ep 2 does not divide dp 1: Megatron groups the tp x pp x dp ranks into tp x ep x pp expert blocks; "
         "hint: make dp a multiple of ep"),
        ("{ep: 4, dp: 2, tp: 2, sequence_parallel: true}", "fp32", "tiny-qwen3-moe", "parallel.ep",
         "ep 4 does not divide dp 2"),
        ("{ep: 2, dp: 2}", "fp16", "tiny-qwen3-moe", "parallel.ep",
         "Megatron's expert parallelism refuses fp16 training; hint: use bf16"),
        ("{tp: 2}", "fp32", "tiny-qwen3-moe", "parallel.sequence_parallel",
         "tiny-qwen3-moe is a mixture of experts: MoE training with tp 2 needs sequence parallelism "
         "(MindSpeed-LLM's MoE layer refuses it without); hint: set parallel.sequence_parallel: true"),
        ("{ep: 0}", "fp32", "tiny-qwen3-moe", "parallel.ep", "must be > 0"),
    ],
    ids=["experts", "dense", "dp", "dp-with-tp", "fp16", "sequence-parallel", "zero"],
)
def test_expert_parallelism_is_validated_as_megatron_does(tmp_path, parallel, dtype, arch, field, message):
    msg = only(tmp_path, moe(parallel, dtype, arch))
    assert f": {field}: {message}" in msg


@pytest.mark.parametrize("parallel", ["{ep: 2, dp: 2}", "{ep: 8, dp: 8}", "{ep: 2, dp: 4, tp: 2, sequence_parallel: true}",
                                      "{ep: 2, dp: 2, pp: 2}"])
def test_layouts_megatron_takes_are_accepted(tmp_path, parallel):
    (tmp_path / "r.yaml").write_text(moe(parallel, "bf16"))
    assert load_recipe(tmp_path / "r.yaml").parallel.ep == int(parallel.split("ep: ")[1].split(",")[0])


def rendered(version: str, tmp_path: Path) -> dict[str, list[str]]:
    """Script name -> the argv of its MindSpeed-LLM entry point (after the .py), as bash passes it."""
    out = {}
    for script in render(load_recipe(RECIPE), "mindspeed-llm", tmp_path / version, version=version):
        if script.suffix == ".sh":
            (argv,) = commands(script, tmp_path)
            at = next(i for i, w in enumerate(argv) if w.endswith(".py"))
            out[script.name.split("_")[0] + "_" + script.name.rsplit("_", 1)[1].removesuffix(".sh")] = argv[at:]
    return out


def values(argv: list[str]) -> dict[str, list[str]]:
    """--flag -> its values (a bare flag: [])."""
    out: dict[str, list[str]] = {}
    for word in argv[1:]:
        if word.startswith("--"):
            flag = word
            out[flag] = []
        else:
            out[flag].append(word)
    return out


MODEL_FLAGS = ("--num-experts", "--moe-router-topk", "--moe-ffn-hidden-size", "--norm-topk-prob",
               "--expert-model-parallel-size")


@pytest.mark.parametrize("version", VERSIONS)
def test_moe_flags_equal_the_family_facts_and_the_stack_table(version, tmp_path):
    spec, recipe = get_model("qwen3-30b-a3b"), load_recipe(RECIPE)
    scripts = rendered(version, tmp_path)
    model = {"--num-experts": [str(spec.num_experts)], "--moe-router-topk": [str(spec.experts_per_token)],
             "--moe-ffn-hidden-size": [str(spec.moe_ffn_hidden_size)], "--norm-topk-prob": [],
             "--expert-model-parallel-size": [str(recipe.parallel.ep)]}
    assert model == {"--num-experts": ["128"], "--moe-router-topk": ["8"], "--moe-ffn-hidden-size": ["768"],
                     "--norm-topk-prob": [], "--expert-model-parallel-size": ["2"]}
    routing = {
        "tune_ptd": {"--moe-router-load-balancing-type": ["aux_loss"], "--moe-aux-loss-coeff": ["0.001"],
                     "--moe-token-dispatcher-type": ["alltoall_seq"]},
        # a LoRA on a mixture of experts runs only with alltoall_seq (MindSpeed-LLM's lora feature validates it)
        "generate_ptd": {"--moe-router-load-balancing-type": ["softmax_topk"],
                         "--moe-token-dispatcher-type": ["alltoall_seq"]},
        "evaluate_ptd": {"--moe-router-load-balancing-type": ["softmax_topk"],
                         "--moe-token-dispatcher-type": ["alltoall_seq"]},
    }
    for name, extra in routing.items():
        flags = values(scripts[name])
        moe_flags = {f: v for f, v in flags.items() if f.startswith("--moe-") or f in MODEL_FLAGS}
        assert moe_flags == {**model, **extra}, name
        assert flags["--tensor-model-parallel-size"] == ["4"] and flags["--sequence-parallel"] == []
    # MindSpeed-LLM's convert_ckpt_v2.py splits the experts over --target-expert-parallel-size (both versions)
    hf2mcore = values(scripts["ckpt_hf2mcore"])
    assert scripts["ckpt_hf2mcore"][0] == "convert_ckpt_v2.py"
    assert hf2mcore["--target-expert-parallel-size"] == ["2"] and hf2mcore["--model-type-hf"] == ["qwen3-moe"]
    assert "--moe-grouped-gemm" not in hf2mcore  # local experts, the layout tunebridge reads and writes
    mcore2hf = values(scripts["ckpt_mcore2hf"])
    assert mcore2hf["--lora-target-modules"] == ["linear_qkv", "linear_proj"]
    if version == "2.3.0":  # its convert_ckpt_v2.py has no --lora-load: convert_ckpt.py merges, ep 1 out
        assert scripts["ckpt_mcore2hf"][0] == "convert_ckpt.py"
        assert mcore2hf["--target-expert-parallel-size"] == ["1"]
        assert mcore2hf["--spec"] == ["mindspeed_llm.tasks.models.spec.qwen3_spec", "layer_spec"]
    else:  # master's reads the ep size from the checkpoint
        assert scripts["ckpt_mcore2hf"][0] == "convert_ckpt_v2.py" and "--target-expert-parallel-size" not in mcore2hf


@pytest.mark.parametrize("version", VERSIONS)
def test_every_moe_flag_is_in_the_versions_parser_record(version, tmp_path):
    rec = record(version)
    for name, argv in rendered(version, tmp_path).items():
        entry, flags = Path(argv[0]).name, argv[1:]
        dests = check_flags(parser(rec, entry, flags), flags, f"{version} {name}")
        assert len(dests) == len(values(argv))
    options = parser(rec, "posttrain_gpt.py")
    assert {f: options[f]["dest"] for f in MODEL_FLAGS} == {
        "--num-experts": "num_experts", "--moe-router-topk": "moe_router_topk",
        "--moe-ffn-hidden-size": "moe_ffn_hidden_size", "--norm-topk-prob": "norm_topk_prob",
        "--expert-model-parallel-size": "expert_model_parallel_size"}
    assert options["--norm-topk-prob"]["nargs"] == 0
    assert parser(rec, "convert_ckpt_v2.py")["--target-expert-parallel-size"]["dest"] == "target_expert_parallel_size"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_family_facts_left_unrendered_are_the_parsers_defaults(version):
    """What the scripts leave out, MindSpeed-LLM's parser gives the family's value: a softmax router, local
    (not grouped-GEMM) experts, every layer sparse, no pre-softmax (top-k, then softmax: norm_topk_prob)."""
    options = parser(record(version), "posttrain_gpt.py")
    spec = get_model("qwen3-30b-a3b")
    args = {k.key: k.out(spec) for k in spec.family_record.megatron_keys if not k.field and k.flag is None}
    assert args == {"moe_router_score_function": "softmax", "moe_grouped_gemm": False}
    assert options["--moe-router-score-function"]["default"] == args["moe_router_score_function"]
    assert options["--moe-grouped-gemm"]["default"] is args["moe_grouped_gemm"]
    assert options["--moe-layer-freq"]["default"] == 1
    assert options["--moe-router-pre-softmax"]["default"] is (not spec.norm_topk_prob)


@pytest.mark.parametrize("path", [p for p in RECIPES if not load_recipe(p).spec.num_experts], ids=lambda p: p.stem)
def test_dense_recipes_render_no_moe_flag(path):
    text = "\n".join(render_files(load_recipe(path), "mindspeed-llm", num_samples=1000).values())
    assert not any(f in text for f in ("--moe-", "--num-experts", "--norm-topk-prob", "expert-parallel-size"))


@pytest.mark.parametrize("targets,native", [("[all-linear]", "linear_qkv linear_proj linear_fc1 linear_fc2"),
                                            ("[q, v, down]", "linear_qkv linear_fc2")])
def test_lora_on_the_experts_renders_their_modules_and_counts_each_ep_rank(tmp_path, capsys, targets, native):
    """MindSpeed-LLM's linear_fc1 / linear_fc2 also name the local experts' modules: LoRA on gate / up / down of a
    MoE is rendered with them, and each ep rank holds the pairs of its experts / ep."""
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.read_text().replace("targets: [q, k, v, o]", f"targets: {targets}")
                    .replace("../data", str(Path.cwd() / "data")))
    tune = next(t for n, t in render_files(load_recipe(path), "mindspeed-llm").items() if n.startswith("tune_"))
    assert f"--lora-target-modules {native}\n" in tune
    from tunebridge.cli import main
    assert main(["params", str(path), "--backend", "mindspeed-llm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    spec, r, tp, ep = get_model("qwen3-30b-a3b"), 16, 4, 2
    fc1 = r * spec.hidden_size + r * 2 * spec.moe_ffn_hidden_size // tp  # column: A whole, B split over tp
    fc2 = r * spec.moe_ffn_hidden_size // tp + r * spec.hidden_size  # row: A split, B whole
    experts = (fc2 + (fc1 if "fc1" in native else 0)) * spec.num_experts // ep
    q_size, kv_size = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    qkv = r * spec.hidden_size + r * (q_size + 2 * kv_size) // tp
    proj = r * q_size // tp + r * spec.hidden_size if "proj" in native else 0
    assert {(x["tp_rank"], x["ep_rank"]) for x in report["per_rank_trainable"]} == {
        (t, e) for t in range(tp) for e in range(ep)}
    assert {x["trainable"] for x in report["per_rank_trainable"]} == {spec.num_layers * (qkv + proj + experts)}


def test_params_counts_each_ep_rank(tmp_path, capsys):
    from tunebridge.cli import main
    path = tmp_path / "r.yaml"
    path.write_text(moe("{ep: 2, dp: 2}"))
    assert main(["params", str(path), "--backend", "mindspeed-llm", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    spec = get_model("tiny-qwen3-moe")
    assert report["per_rank_trainable"] == mcore_rank_params(spec, 1, 1, 2)
    assert [(r["ep_rank"], r["trainable"]) for r in report["per_rank_trainable"]] == [
        (0, spec.total_params() - spec.num_layers * 4 * spec.expert_params()),
        (1, spec.total_params() - spec.num_layers * 4 * spec.expert_params())]
    assert main(["params", str(path), "--backend", "mindspeed-llm"]) == 0
    assert "ep rank" in capsys.readouterr().out


def test_explain_shows_the_expert_parallel_flag():
    rows = {r.field: r for r in explain_rows(load_recipe(RECIPE))}
    assert (rows["parallel.ep"].value, rows["parallel.ep"].mindspeed_llm) == ("2", "--expert-model-parallel-size 2")
    assert rows["parallel.ep"].mindformers == "-"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_versions_validation_takes_every_moe_command(version):
    """Each rendered command ran through the version's parser and validate_args (the record): none refused, and
    validation set the expert tp to tp, which is why ep must divide dp (and not dp x tp)."""
    probes = {p["script"]: p for entry in record(version)["validation"].values() for p in entry}
    mine = {name: p for name, p in probes.items() if "qwen3-30b-a3b-lora" in name}
    assert len(mine) == 6 and not [p["error"] for p in mine.values() if "error" in p]
    for kind in ("tune_qwen3-30b-a3b-lora_lora_ptd.sh", "generate_qwen3-30b-a3b-lora_ptd.sh",
                 "evaluate_qwen3-30b-a3b-lora_ptd.sh"):
        assert mine[kind]["reset"]["expert_tensor_parallel_size"] == [None, load_recipe(RECIPE).parallel.tp]


def test_params_on_a_stack_that_cannot_express_the_model_is_one_line(capsys):
    from tunebridge.cli import main
    assert main(["params", str(RECIPE), "--backend", "mindformers"]) == 2
    err = capsys.readouterr().err
    missing = get_model("qwen3-30b-a3b").family_record.mindformers_missing
    assert err == f"tunebridge: error: {load_recipe(RECIPE).source}: model: qwen3-30b-a3b: {missing}\n"
