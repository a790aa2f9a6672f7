"""A mixture of experts' auxiliary load-balancing loss (``train.moe_aux_loss_coeff``): tunebridge's term equals
megatron-core 0.16.1's own function, the recipe field renders MindSpeed-LLM's flags (accepted by each version's
parser record), `explain` shows it, a dense model refuses it (Megatron's log line with it: test_logs). Training with it
on torch and megatron-core: tests/test_families_run.py::test_load_balancing_loss_trains_alike_on_both_stacks."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunebridge.backends.mindspeed_llm.render import VERSIONS
from tunebridge.recipe.explain import explain_rows
from tunebridge.recipe.schema import MOE_AUX_LOSS_COEFF, load_recipe
from tunebridge.train import moe_aux
from tunebridge.train.config import TrainConfig

from .conftest import REPO
from .test_mindspeed_llm_flags import check_flags, parser, record
from .test_moe_render import RECIPE, rendered, values
from .test_recipe import only


def megatron_core_aux(logits: torch.Tensor, topk: int, coeff: float) -> torch.Tensor:
    """What megatron-core's TopKRouter computes for one layer (router.py: routing, _apply_aux_loss; tp 1, no
    padding mask), with its own functions."""
    from megatron.core.transformer.moe.moe_utils import (
        compute_routing_scores_for_aux_loss,
        switch_load_balancing_loss_func,
    )

    routing_map, scores = compute_routing_scores_for_aux_loss(logits, topk, "softmax")
    return switch_load_balancing_loss_func(
        probs=scores,
        tokens_per_expert=routing_map.sum(dim=0),
        total_num_tokens=logits.shape[0],
        topk=topk,
        num_experts=logits.shape[1],
        moe_aux_loss_coeff=coeff,
    )


@pytest.mark.parametrize("tokens,experts,topk,coeff", [(37, 8, 2, 0.01), (64, 128, 8, 0.001), (5, 4, 1, 0.5)])
def test_the_aux_term_is_megatron_cores_own(tokens, experts, topk, coeff):
    torch.manual_seed(tokens)
    logits = torch.randn(tokens, experts, dtype=torch.float32) * 3
    ours_in, theirs_in = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = moe_aux.switch_load_balancing_loss(ours_in, topk, coeff)
    theirs = megatron_core_aux(theirs_in, topk, coeff)
    assert torch.equal(ours, theirs), (float(ours), float(theirs))  # bit for bit
    ours.backward()
    theirs.backward()
    assert torch.equal(ours_in.grad, theirs_in.grad)
    # a perfectly balanced router gives aux = coeff (uniform scores: P_i = T / E, f_i = T k / E)
    uniform = moe_aux.switch_load_balancing_loss(torch.zeros(experts * 2, experts), topk, coeff)
    assert float(uniform) == pytest.approx(coeff, rel=1e-6)


def test_bf16_router_logits_are_scored_in_fp32_and_counted_exactly():
    """A bf16 router (as on Ascend): megatron-core scores in fp32 and counts tokens in integers; 600 tokens over
    4 experts put about 300 on each, more than bf16 counts exactly (256 + 1 rounds to 256)."""
    torch.manual_seed(3)
    logits = (torch.randn(600, 4) * 2).bfloat16()
    ours = moe_aux.switch_load_balancing_loss(logits, 2, 0.01)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, megatron_core_aux(logits, 2, 0.01))


def test_transformers_own_load_balancing_loss_is_another_formula():
    """transformers' Qwen3-MoE loss pools the layers' tokens and has no 1 / k: not what MindSpeed-LLM trains."""
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    torch.manual_seed(0)
    layers = [torch.randn(16, 8) for _ in range(2)]
    megatron = sum(float(a) for a in moe_aux.layer_losses(layers, 2, 1.0))
    hf = float(load_balancing_loss_func(tuple(layers), 8, 2))
    assert hf != pytest.approx(megatron, rel=1e-3)


def test_logged_is_megatrons_load_balancing_loss():
    # aux / coeff summed over layers and micro-batches, over the number of layers and micro-batches
    assert moe_aux.logged([[0.02, 0.04], [0.06, 0.08]], 0.01) == pytest.approx((2 + 4 + 6 + 8) / 2 / 2)


def recipe_with(tmp_path: Path, line: str | None, source: Path = RECIPE) -> Path:
    """``source`` with ``line`` added under train:, its data paths still resolving."""
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "recipes").mkdir()
    text = (REPO / source).read_text()
    if line is not None:
        text = text.replace("\ntrain:\n", f"\ntrain:\n  {line}\n")
    path = tmp_path / "recipes" / source.name
    path.write_text(text)
    return path


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "line,kind,coeff",
    [(None, "aux_loss", "0.001"), ("moe_aux_loss_coeff: 0.01", "aux_loss", "0.01"),
     ("moe_aux_loss_coeff: 0.0", "none", "0")],
    ids=["default", "0.01", "off"],
)
def test_the_coefficient_renders_megatrons_flags(tmp_path, version, line, kind, coeff, monkeypatch):
    path = recipe_with(tmp_path, line)
    monkeypatch.setattr("tests.test_moe_render.RECIPE", path)
    argv = rendered(version, tmp_path / "out")["tune_ptd"]
    flags = values(argv)
    assert (flags["--moe-router-load-balancing-type"], flags["--moe-aux-loss-coeff"]) == ([kind], [coeff])
    options = parser(record(version), "posttrain_gpt.py")
    assert "none" in options["--moe-router-load-balancing-type"]["choices"]  # 'none': Megatron's plain top-k
    check_flags(options, argv[1:], f"{version} {line}")


def test_the_default_is_mindspeed_llms_and_every_stack_trains_it():
    recipe = load_recipe(RECIPE)
    assert recipe.train.moe_aux_loss_coeff is None and MOE_AUX_LOSS_COEFF == 0.001
    assert TrainConfig.from_recipe(recipe).moe_aux_loss_coeff == 0.001
    assert TrainConfig.from_recipe(recipe, "mindspeed-llm").moe_aux_loss_coeff == 0.001
    dense = load_recipe(REPO / "recipes" / "tiny-parity-lora.yaml")
    assert TrainConfig.from_recipe(dense).moe_aux_loss_coeff == 0.0


def test_explain_shows_the_coefficient_on_each_stack(tmp_path):
    rows = {r.field: r for r in explain_rows(load_recipe(recipe_with(tmp_path, "moe_aux_loss_coeff: 0.02")))}
    row = rows["train.moe_aux_loss_coeff"]
    assert (row.value, row.mindformers, row.torch) == ("0.02", "-", "moe_aux_loss_coeff: 0.02")
    assert row.mindspeed_llm == "--moe-router-load-balancing-type aux_loss; --moe-aux-loss-coeff 0.02"
    assert rows_of(RECIPE)["train.moe_aux_loss_coeff"].value == "0.001"  # the default, shown
    assert "train.moe_aux_loss_coeff" not in rows_of(REPO / "recipes" / "tiny-parity-lora.yaml")


def rows_of(path: Path) -> dict:
    return {r.field: r for r in explain_rows(load_recipe(path))}


DENSE = """\
name: t
model: {arch: tiny-qwen3}
finetune:
  method: full
train:
  moe_aux_loss_coeff: COEFF
"""


def test_a_dense_model_refuses_the_coefficient(tmp_path):
    msg = only(tmp_path, DENSE.replace("COEFF", "0.01"))
    assert msg == (f"{tmp_path / 'recipe.yaml'}:6:3: train.moe_aux_loss_coeff: tiny-qwen3 is a dense model: it has no "
                   f"router whose load-balancing loss this would weigh; hint: remove train.moe_aux_loss_coeff")
    assert "\n" not in msg


def test_a_negative_coefficient_is_refused(tmp_path):
    msg = only(tmp_path, DENSE.replace("tiny-qwen3", "tiny-qwen3-moe").replace("COEFF", "-0.1"))
    assert msg.endswith("train.moe_aux_loss_coeff: must be >= 0 (0: no load-balancing loss)")
