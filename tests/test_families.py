"""The family registry: every family module found, each stack's config written and read back through its two-way
table, and a family always declared, never guessed from a model's fields."""
from __future__ import annotations

import argparse
import pkgutil

import pytest
import torch

import tunebridge.model.families as families_pkg
from tunebridge.model.catalogue import CATALOGUE, get_model
from tunebridge.errors import TunebridgeError
from tunebridge.model.families import FAMILIES, keys
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.model.spec import ModelSpec
from tunebridge.backends.render import default_prompt_type

from .families import TINY_ALL


def architecture(spec: ModelSpec) -> dict:
    """What a config holds of a spec: everything but its name and the catalogue's tokenizer facts."""
    return {k: v for k, v in spec.to_dict().items() if k not in ("name", "template", "vocabulary")}


def test_every_family_module_is_registered_and_has_a_tiny_model():
    modules = {m.name for m in pkgutil.iter_modules(families_pkg.__path__)} - {"keys"}
    assert modules == set(FAMILIES)
    assert {get_model(n).family for n in TINY_ALL} == set(FAMILIES)  # so the generated tests cover every family


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_hf_config_round_trip(name):
    spec = CATALOGUE[name]
    back = ModelSpec.from_hf_dict(spec.to_hf_config(), name=name)
    expected = spec.with_(family="llama", template="", vocabulary="") if spec.family == "internlm" else spec
    assert architecture(back) == architecture(expected)  # InternLM is written as Llama with attention_bias


@pytest.mark.parametrize("name", [n for n in CATALOGUE if not CATALOGUE[n].num_experts])
def test_megatron_args_round_trip(name):
    spec = CATALOGUE[name]
    back = mcore_fmt.spec_from_args(mcore_fmt.make_args(spec, 2, 1, None, 1, torch.float32), name)
    expected = spec.with_(rope_scaling=None)  # Megatron's args do not hold it (the scripts pass it as flags)
    if spec.family == "internlm":  # recorded as llama2, the only model type MindSpeed-LLM has for it
        expected = expected.with_(family="llama", template="", vocabulary="")
    assert architecture(back) == architecture(expected)


@pytest.mark.parametrize("name", [n for n in CATALOGUE if CATALOGUE[n].family_record.mindformers])
def test_mindformers_config_round_trip(name):
    spec = CATALOGUE[name]
    table = spec.family_record.mindformers.keys
    fields = keys.read(table, keys.write(table, spec), "model_config")
    assert fields == {k.field: getattr(spec, k.field) for k in table}


def test_args_that_name_no_family_are_refused():
    """A checkpoint's args without model_type_hf used to be read as Llama, Qwen2 or InternLM from its bias flags."""
    args = mcore_fmt.make_args(get_model("tiny-qwen2"), 1, 1, None, 1, torch.float32)
    del args.model_type_hf
    with pytest.raises(TunebridgeError, match="model_type_hf"):
        mcore_fmt.spec_from_args(args, "x")
    args.model_type_hf = "qwen25"
    args.add_qkv_bias = False  # the declared family has its biases, whatever a flag says
    assert mcore_fmt.spec_from_args(args, "x").family == "qwen2"


def test_a_llama_that_cannot_hold_its_biases_is_refused():
    """Llama's attention_bias covers q, k, v and o: q/k/v biases alone are not a Llama (they used to make it Qwen2)."""
    args = argparse.Namespace(**vars(mcore_fmt.make_args(get_model("tiny-llama"), 1, 1, None, 1, torch.float32)))
    args.add_qkv_bias = True
    with pytest.raises(TunebridgeError, match="attention_bias"):
        mcore_fmt.spec_from_args(args, "x")


def test_templates_are_declared_not_read_from_the_vocabulary_size():
    """A Llama of 128,256 ids used to get the llama3 template for its vocabulary size."""
    class Recipe:
        data = None
        spec = get_model("tiny-llama").with_(vocab_size=128256)
    assert default_prompt_type(Recipe) == "llama2"
    Recipe.spec = get_model("llama3-8b")
    assert default_prompt_type(Recipe) == "llama3"
    Recipe.spec = get_model("tiny-qwen2")
    assert default_prompt_type(Recipe) == "qwen"
