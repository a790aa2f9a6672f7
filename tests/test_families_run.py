"""The families MindFormers cannot run (so the three-backend parity run of tests/test_parity_backends.py has no
place for them) trained on torch and on megatron-core from one recipe: ``tunebridge run --backend all`` runs the
two, says why MindFormers is left out, and the curves agree as the parity run's do."""
from __future__ import annotations

import contextlib
import io

import pytest
import yaml

from tunebridge.backends.result import RunResult
from tunebridge.model.catalogue import get_model
from tunebridge.cli import main
from tunebridge.converters.merge import merge_lora
from tunebridge.parity.logits import verify
from tunebridge.parity.verdicts import loss_checks
from tunebridge.recipe.schema import load_recipe

from .conftest import REPO
from .families import MINDFORMERS_TINY, RECIPES, TINY_ALL, TINY_MOE, renderable
from .test_convert import make_hf

STEPS = 8


def run_both(
    tmp_path,
    name: str,
    finetune: dict | None = None,
    steps: int = STEPS,
    train: dict | None = None,
    parallel: dict | None = None,
) -> tuple[RunResult, RunResult]:
    """``tunebridge run --backend all`` of the parity recipe on ``name`` (``finetune`` replacing its LoRA, ``train``
    and ``parallel`` added to its settings): the torch and megatron-core results, MindFormers left out with its
    family's reason."""
    recipe = yaml.safe_load((REPO / "recipes" / "tiny-parity-lora.yaml").read_text())
    recipe["name"] = f"{name}-lora"
    recipe["model"] = {"arch": name, "weights": str(make_hf(tmp_path / "hf", name))}
    recipe["train"]["max_steps"] = steps
    recipe["train"].update(train or {})
    recipe["parallel"].update(parallel or {})
    recipe["finetune"] = finetune or recipe["finetune"]
    recipe["data"]["train"]["path"] = str(REPO / "data" / "samples" / "demo_math_train.jsonl")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    printed, noted = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(noted):
        assert main(["run", str(tmp_path / "recipe.yaml"), "--backend", "all", "--out", str(tmp_path / "run")]) == 0
    assert f"mindformers: {name}: {get_model(name).family_record.mindformers_missing}" in noted.getvalue()
    assert not (tmp_path / "run" / "mindformers").exists()
    torch_run, mcore_run = (RunResult.load(tmp_path / "run" / b / "result.json") for b in ("torch", "mindspeed-llm"))
    assert len(torch_run.steps) == len(mcore_run.steps) == steps
    return torch_run, mcore_run


def assert_same_curve(torch_run: RunResult, mcore_run: RunResult) -> None:
    verdicts = loss_checks(torch_run, mcore_run, "torch", "mindspeed-llm")
    assert all(v.passed for v in verdicts), [(v.name, v.figure()) for v in verdicts if not v.passed]
    for a, b in zip(torch_run.steps, mcore_run.steps):  # fp32 on both: the same curve, not just a close one
        assert b.loss == pytest.approx(a.loss, rel=1e-5)
    assert torch_run.steps[-1].loss < torch_run.steps[0].loss


@pytest.mark.parametrize("name", [n for n in TINY_ALL if n not in MINDFORMERS_TINY])
def test_torch_and_megatron_core_agree(tmp_path, name):
    torch_run, mcore_run = run_both(tmp_path, name)
    assert torch_run.trainable_params == mcore_run.trainable_params > 0
    assert_same_curve(torch_run, mcore_run)
    # the trained adapters (a mixture of experts: o and every expert's down) merged into the base: the same model
    run = tmp_path / "run"
    merge_lora(tmp_path / "hf", run / "torch" / "final", tmp_path / "torch-merged", progress=False)
    merge_lora(tmp_path / "hf", run / "mindspeed-llm" / "checkpoint", tmp_path / "mcore-merged", progress=False)
    (trained,) = verify([(tmp_path / "torch-merged", "hf"), (tmp_path / "mcore-merged", "hf")], get_model(name))
    (moved,) = verify([(tmp_path / "hf", "hf"), (tmp_path / "torch-merged", "hf")], get_model(name))
    assert trained.max_abs < 2e-5 and trained.cosine > 0.99999 and moved.max_abs > 1e-2, (trained, moved)


@pytest.mark.parametrize("name", TINY_MOE)
def test_full_fine_tuning_of_a_mixture_of_experts_agrees(tmp_path, name):
    """Every parameter trained, the router and the experts included: the same routing on both stacks, step
    after step (4 steps keep it short: 5 to 20 s on 2 cores, depending on their load)."""
    torch_run, mcore_run = run_both(tmp_path, name, {"method": "full"}, steps=4)
    spec = get_model(name)
    assert torch_run.trainable_params == mcore_run.trainable_params == spec.total_params()
    assert torch_run.total_params == mcore_run.total_params == spec.total_params()
    assert_same_curve(torch_run, mcore_run)


@pytest.mark.parametrize("name", TINY_MOE)
def test_load_balancing_loss_trains_alike_on_both_stacks(tmp_path, name):
    """train.moe_aux_loss_coeff 0.05 against 0, full fine-tuning (the router trained), 4 steps: megatron-core's
    routers and the torch backend's Megatron formula (tunebridge/train/moe_aux.py) train the same objective, the
    LM loss reported apart from the aux term and Megatron's load_balancing_loss alike on both; the term moves
    the curve (measured: 4.3844 against 3.8150 at step 4)."""
    curves = {}
    for coeff in (0.0, 0.05):
        torch_run, mcore_run = run_both(
            tmp_path / str(coeff), name, {"method": "full"}, steps=4, train={"moe_aux_loss_coeff": coeff}
        )
        assert_same_curve(torch_run, mcore_run)
        balance = [(a.load_balancing_loss, b.load_balancing_loss) for a, b in zip(torch_run.steps, mcore_run.steps)]
        if coeff:
            assert all(b == pytest.approx(a, rel=1e-5) for a, b in balance), balance
            log = (tmp_path / str(coeff) / "run" / "mindspeed-llm" / "logs" / "train.log").read_text()
            assert f"load_balancing_loss: {mcore_run.steps[1].load_balancing_loss:.6E} |" in log
        else:
            assert balance == [(None, None)] * 4
        curves[coeff] = [s.loss for s in torch_run.steps]
    # the same model before the first update: the LM loss alone (the aux run's forward skips each row's last id,
    # as MindSpeed-LLM's does, so its sums run in another order)
    assert curves[0.05][0] == pytest.approx(curves[0.0][0], rel=1e-6)
    assert min(abs(a - b) for a, b in zip(curves[0.05][1:], curves[0.0][1:])) > 0.05, curves


@pytest.mark.parametrize("name", TINY_MOE)
@pytest.mark.parametrize("pp,loss_average", [(2, "token"), (1, "micro-batch")], ids=["pp2", "micro-batch"])
def test_load_balancing_loss_per_stage_and_per_micro_batch(tmp_path, name, pp, loss_average):
    """megatron-core at pp 2: each stage's routers add their layers' terms, and the logged load_balancing_loss is
    summed over the stages (as Megatron's tracker is) before it is averaged; with the loss averaged per
    micro-batch, the term's gradient is scaled by 1 / micro-batches (MoEAuxLossAutoScaler's scale): the same
    curve on both stacks either way."""
    torch_run, mcore_run = run_both(
        tmp_path,
        name,
        {"method": "full"},
        steps=4,
        train={"moe_aux_loss_coeff": 0.05, "loss_average": loss_average},
        parallel={"pp": pp},
    )
    assert_same_curve(torch_run, mcore_run)
    for a, b in zip(torch_run.steps, mcore_run.steps):
        assert b.load_balancing_loss == pytest.approx(a.load_balancing_loss, rel=1e-5)


@pytest.mark.parametrize("path", [p for p in RECIPES if "mindformers" not in renderable(p)], ids=lambda p: p.stem)
def test_mindformers_refuses_a_family_it_cannot_run_saying_why(path, tmp_path, capsys):
    spec = load_recipe(path).spec
    why = f"{spec.name}: {spec.family_record.mindformers_missing}"
    assert main(["render", str(path), "--backend", "mindformers", "--out", str(tmp_path / "mf")]) == 2
    assert capsys.readouterr().err.strip() == f"tunebridge: error: {why}"
    assert main(["render", str(path), "--backend", "all", "--out", str(tmp_path / "all")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all"]
    assert why in capsys.readouterr().err
