"""One tiny model, three frameworks: transformers, megatron-core (converted, TP 2 / PP 2 uneven) and MindFormers
(converted .ckpt, through the bridge) give the same greedy predictions, hence the same math and SQuAD metrics,
and the same log-likelihoods within 1e-4."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tunebridge.cli import main
from tunebridge.converters.checkpoint import convert
from tunebridge.data.tokenizer import pad_id
from tunebridge.data.squad import write_squad_eval
from tunebridge.errors import TunebridgeError
from tunebridge.evaluation.hf_scorer import HFScorer
from tunebridge.evaluation.mcore_scorer import McoreScorer
from tunebridge.evaluation.mindformers_scorer import MindFormersScorer
from tunebridge.evaluation.runner import run_eval
from tunebridge.evaluation.tokens import load_eval_tokenizer

REPO = Path(__file__).resolve().parent.parent
SCORERS = ("hf", "mcore", "mindformers")
# what a run reports about where it ran, not what it computed
ABOUT = {"scorer", "model", "adapter", "tokenizer", "device", "dtype", "data"}
PAD_PROMPT = "What is <pad>2 + 2?"  # the pad id inside a prompt is a real token: no framework may mask it
LOGLIK = [("Question: What is 2 + 3?\nAnswer:", x) for x in (" A", " B", " C", " D")] + [
    ("What is 7 - 1?", " The answer is 6."), (PAD_PROMPT, " 4"), ("x", "y")]


@pytest.fixture(scope="module")
def tokenizer():
    return load_eval_tokenizer(None)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scorers")
    assert main(["init-model", "tiny-llama", str(root / "hf"), "--seed", "5"]) == 0
    convert(root / "hf", root / "mc-tp2", "hf", "mcore", tp=2, progress=False)
    convert(root / "hf", root / "mc-pp2", "hf", "mcore", pp=2, num_layer_list=[1, 3], progress=False)
    convert(root / "hf", root / "mf", "hf", "mindformers", progress=False)
    return {"hf": root / "hf", "mc-tp2": root / "mc-tp2", "mc-pp2": root / "mc-pp2", "mf": root / "mf"}


@pytest.fixture(scope="module")
def data(tmp_path_factory, tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    rows = [json.loads(line) for line in (REPO / "data/samples/demo_math_test.jsonl").read_text().splitlines()[:5]]
    rows.append({"problem": PAD_PROMPT, "solution": "4"})
    (root / "math.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_squad_eval(REPO / "data/samples/squad_dev_sample.json", root / "squad", tokenizer, 480, mindrecord=False)
    return {"math": root / "math.jsonl", "squad": root / "squad" / "squad_eval.jsonl"}


def _read(out: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = [json.loads(r) for r in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return metrics, rows


@pytest.fixture(scope="module")
def runs(models, data, tokenizer, tmp_path_factory) -> dict[str, dict]:
    """Per scorer: math through ``tunebridge eval run --scorer``, SQuAD through run_eval, log-likelihoods; timed."""
    root = tmp_path_factory.mktemp("runs")
    cli_model = {"hf": models["hf"], "mcore": models["mc-tp2"], "mindformers": models["mf"]}
    results = {}
    for name in SCORERS:
        seconds = {}
        start = time.perf_counter()
        assert main(["eval", "run", str(cli_model[name]), "--scorer", name, "--task", "math", "--data",
                     str(data["math"]), "--max-new-tokens", "12", "--batch-size", "4", "--out",
                     str(root / name / "math"), "--no-progress"]) == 0
        seconds["math (cli)"] = time.perf_counter() - start
        scorer = {"hf": lambda: HFScorer.from_dir(models["hf"], tokenizer=tokenizer),
                  "mcore": lambda: McoreScorer(models["mc-pp2"], tokenizer, batch_size=2),
                  "mindformers": lambda: MindFormersScorer(models["mf"] / "model.ckpt", tokenizer, batch_size=2),
                  }[name]()
        start = time.perf_counter()
        run_eval(scorer, "squad", data["squad"], root / name / "squad", limit=3, max_new_tokens=8, progress=False)
        seconds["squad"] = time.perf_counter() - start
        start = time.perf_counter()
        loglik = scorer.loglikelihood([c for c, _ in LOGLIK], [x for _, x in LOGLIK])
        seconds["loglik"] = time.perf_counter() - start
        results[name] = {"math": _read(root / name / "math"), "squad": _read(root / name / "squad"),
                         "loglik": loglik, "seconds": seconds}
        print(f"\n{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return results


def test_a_pad_token_inside_a_prompt_is_attended_to(runs, models, tokenizer):
    # the id the scorers pad batches with is a real token of this prompt ...
    assert pad_id(tokenizer) in tokenizer.encode(PAD_PROMPT)
    at = [c for c, _ in LOGLIK].index(PAD_PROMPT)
    # ... which matters to the model: dropping it (what masking it as a key would approach) moves the score ...
    without = HFScorer.from_dir(models["hf"], tokenizer=tokenizer).loglikelihood([PAD_PROMPT.replace("<pad>", "")],
                                                                                [" 4"])
    assert abs(without[0] - runs["hf"]["loglik"][at]) > 1e-2
    # ... and no framework masks it
    for name in ("mcore", "mindformers"):
        assert runs[name]["loglik"][at] == pytest.approx(runs["hf"]["loglik"][at], abs=1e-4), name


@pytest.mark.parametrize("task", ["math", "squad"])
def test_greedy_predictions_are_identical(runs, task):
    want = [r["prediction"] for r in runs["hf"][task][1]]
    assert len(want) == (6 if task == "math" else 3)
    assert len({p for p in want}) > 1, "a degenerate model (one answer for all) proves little"
    for name in ("mcore", "mindformers"):
        assert [r["prediction"] for r in runs[name][task][1]] == want, name


@pytest.mark.parametrize("task", ["math", "squad"])
def test_metrics_are_identical(runs, task):
    want = {k: v for k, v in runs["hf"][task][0].items() if k not in ABOUT}
    assert want["count"] == (6 if task == "math" else 3)
    for name in ("mcore", "mindformers"):
        metrics = runs[name][task][0]
        assert metrics["scorer"] == name
        assert {k: v for k, v in metrics.items() if k not in ABOUT} == want, name


def test_loglikelihoods_agree(runs):
    want = runs["hf"]["loglik"]
    assert all(v < 0 for v in want) and len(set(want[:4])) == 4
    for name in ("mcore", "mindformers"):
        assert runs[name]["loglik"] == pytest.approx(want, abs=1e-4), name


def test_mcore_scorer_applies_a_fused_lora_adapter(models, tokenizer, runs, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunebridge.converters.adapters import convert_adapter
    from tunebridge.model.catalogue import get_model
    torch.manual_seed(3)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(models["hf"]),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft.save_pretrained(tmp_path / "peft")
    convert_adapter(tmp_path / "peft", tmp_path / "mcore", "peft", "mcore", get_model("tiny-llama"), tp=2)
    contexts, continuations = [c for c, _ in LOGLIK], [x for _, x in LOGLIK]
    want = HFScorer.from_dir(models["hf"], tmp_path / "peft", tokenizer).loglikelihood(contexts, continuations)
    got = McoreScorer(models["mc-tp2"], tokenizer, adapter=tmp_path / "mcore").loglikelihood(contexts, continuations)
    assert got == pytest.approx(want, abs=1e-4)
    assert max(abs(a - b) for a, b in zip(want, runs["hf"]["loglik"])) > 1e-2  # the adapter changes the model
    with pytest.raises(TunebridgeError, match=r"the adapter is tp 2 x pp 1"):
        McoreScorer(models["mc-pp2"], tokenizer, adapter=tmp_path / "mcore")


def test_format_errors(models, tokenizer):
    with pytest.raises(TunebridgeError, match="latest_checkpointed_iteration"):
        McoreScorer(models["hf"], tokenizer)
    with pytest.raises(TunebridgeError, match="expected a .ckpt file"):
        MindFormersScorer(models["hf"], tokenizer)
    assert main(["eval", "run", str(models["mf"]), "--scorer", "mindformers", "--task", "math", "--data", "x",
                 "--dtype", "bf16", "--out", "unused"]) == 2
