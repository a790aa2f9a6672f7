"""Counted parameters and tensor names equal what MindFormers' LlamaForCausalLM + pet_config instantiates."""
from __future__ import annotations

import pytest

from tunebridge.model.accounting import count, expand_targets
from tunebridge.backends.mindformers.bridge import call_mindspore
from tunebridge.model.catalogue import get_model
from tunebridge.model.dialects import MINDFORMERS
from tunebridge.model.dialects.mindformers import pet_target_regex

from .families import MINDFORMERS_TINY as TINY

TARGET_SETS = [["q", "v"], ["q", "k", "v", "o"], ["gate", "up", "down"], ["all-linear"]]


@pytest.fixture(scope="module")
def described(ms_python):
    cases = []
    for name in TINY:
        spec = get_model(name)
        cases.append({"name": name, "spec": spec.to_dict(), "pet": None})
        for targets in TARGET_SETS:
            for rank in (4, 8):
                pet = {"pet_type": "lora", "lora_rank": rank, "lora_alpha": 16, "lora_dropout": 0.0,
                       "target_modules": pet_target_regex(expand_targets(targets))}
                cases.append({"name": name, "spec": spec.to_dict(), "pet": pet, "targets": targets, "rank": rank})
    results = call_mindspore("backends.mindformers.ms.model", "describe_many",
                             cases=[{"spec": c["spec"], "pet": c["pet"]} for c in cases], timeout=600)
    return list(zip(cases, results))


def test_versions(described):
    assert described[0][1]["mindspore"] == "2.9.0" and described[0][1]["mindformers"] == "1.9.0"


def test_tensor_names_and_shapes_equal_the_dialect(described):
    for case, got in described:
        if case["pet"]:
            continue
        spec = get_model(case["name"])
        names = MINDFORMERS.tensor_names(spec)
        assert sorted(got["params"]) == sorted(names), case["name"]
        for rule in MINDFORMERS.rules(spec):
            for i in (range(spec.num_layers) if rule.per_layer else [None]):
                assert got["params"][rule.format(i)]["shape"] == list(spec.shape(rule.parts[0]))
        assert got["total_params"] == spec.total_params()


def test_lora_counts_and_names(described):
    checked = 0
    for case, got in described:
        if not case["pet"]:
            continue
        spec = get_model(case["name"])
        report = count(spec, "mindformers", rank=case["rank"], targets=case["targets"])
        assert got["trainable_params"] == report.trainable_params, (case["name"], case["targets"])
        assert got["total_params"] - got["trainable_params"] == spec.total_params()
        trainable = {n: v["shape"] for n, v in got["params"].items() if v["trainable"]}
        expected = {}
        for p in expand_targets(case["targets"]):
            module = MINDFORMERS.lora_module_for(p)
            for layer in range(spec.num_layers):
                a, b = MINDFORMERS.lora_names(module, layer)
                expected[a] = [case["rank"], module.in_features(spec)]
                expected[b] = [module.out_features(spec), case["rank"]]
        assert trainable == expected
        checked += 1
    assert checked == len(TINY) * len(TARGET_SETS) * 2
