"""What real Megatron / MindSpeed-LLM rank files hold is read; nothing in a pickle runs; outputs look like theirs."""
from __future__ import annotations

import argparse
import builtins
import collections
import io
import json
import os
import pickle
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tunebridge.io.atomic import atomic_dir, atomic_file
from tunebridge.converters.checkpoint import convert
from tunebridge.errors import TunebridgeError
from tunebridge.converters.formats import mcore as mcore_fmt
from tunebridge.converters.formats.torchzip import ForeignValue, _Unpickler, lazy_load
from tunebridge.converters.merge import merge_lora

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mindspeed_llm"


def test_a_megatron_training_checkpoint_is_read(tmp_path):
    """torch.save's default pickle (protocol 2) of what Megatron's save_checkpoint stores after training:
    a defaultdict state dict, numpy arrays in rng_state, a Megatron enum in args."""
    from megatron.core.transformer.enums import AttnBackend
    np_state = np.random.RandomState(3).get_state()
    saved = {
        "model": collections.defaultdict(dict, {"decoder.final_layernorm.weight": torch.arange(4.0)}),
        "args": argparse.Namespace(attention_backend=AttnBackend.auto, params_dtype=torch.bfloat16, lr=1e-4,
                                   data_path=["a", "b"], shape=torch.Size([2, 3])),
        "rng_state": [{"random_rng_state": random.Random(3).getstate(), "np_rng_state": np_state,
                       "torch_rng_state": torch.get_rng_state(), "np_scalar": np.float64(0.5)}],
        "opt_param_scheduler": {"max_lr": 1e-4, "num_steps": 8},
        "iteration": 8, "checkpoint_version": 3.0,
    }
    torch.save(saved, tmp_path / "model_optim_rng.pt")
    got = mcore_fmt.load_rank_file(tmp_path / "model_optim_rng.pt")
    assert isinstance(got["model"], collections.defaultdict)
    assert torch.equal(got["model"]["decoder.final_layernorm.weight"], torch.arange(4.0))
    assert got["args"].attention_backend == ForeignValue("megatron.core.transformer.enums.AttnBackend",
                                                         (AttnBackend.auto.value,))
    assert got["args"].params_dtype is torch.bfloat16 and got["args"].shape == torch.Size([2, 3])
    rng = got["rng_state"][0]
    assert rng["np_rng_state"][0] == "MT19937" and np.array_equal(rng["np_rng_state"][1], np_state[1])
    assert rng["random_rng_state"] == random.Random(3).getstate() and rng["np_scalar"] == 0.5
    assert torch.equal(rng["torch_rng_state"], torch.get_rng_state())


class Reduces:
    """Pickles as ``target(*args)``."""

    def __init__(self, target, *args):
        self.target, self.args = target, args

    def __reduce__(self):
        return self.target, self.args


PAYLOADS = {
    "os.system": lambda m: Reduces(os.system, f"touch {m}"),
    "eval": lambda m: Reduces(builtins.eval, f"open('{m}', 'w')"),
    "exec": lambda m: Reduces(builtins.exec, f"open('{m}', 'w')"),
    "subprocess": lambda m: Reduces(subprocess.call, ["touch", str(m)]),
    "getattr": lambda m: Reduces(builtins.getattr, str(m), "upper"),
    "numpy.load": lambda m: Reduces(np.load, str(m)),
    "defaultdict-factory": lambda m: collections.defaultdict(os.system),  # a factory that is not allow-listed
}


@pytest.mark.parametrize("name", PAYLOADS)
def test_nothing_in_a_pickle_runs(tmp_path, name):
    marker = tmp_path / "ran"
    torch.save({"model": {"w": torch.zeros(2)}, "args": PAYLOADS[name](marker), "iteration": 1},
               tmp_path / "model_optim_rng.pt")
    with pytest.raises(TunebridgeError, match="refused to unpickle"):
        mcore_fmt.load_rank_file(tmp_path / "model_optim_rng.pt")
    assert not marker.exists()


def test_a_framework_global_is_recorded_never_imported(tmp_path):
    """A ``megatron.*`` global (an enum in real files) becomes an inert record: even a function's name is never
    looked up, let alone called."""
    marker = tmp_path / "ran"
    data = pickle.dumps(Reduces(os.system, f"touch {marker}"), protocol=2)
    data = data.replace(b"cposix\nsystem\n", b"cmegatron.training.utils\nsystem\n")
    got = _Unpickler(io.BytesIO(data), archive=None).load()
    assert got == ForeignValue("megatron.training.utils.system", (f"touch {marker}",))
    assert not marker.exists()


def test_output_roots_are_0755(tmp_path):
    old = os.umask(0o022)
    try:
        convert(FIXTURES / "hf" / "llama-gqa", tmp_path / "mc", "hf", "mcore", tp=2, pp=2, progress=False)
        with atomic_dir(tmp_path / "d"):
            pass
        with atomic_file(tmp_path / "f.txt") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert oct((tmp_path / "mc").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "d").stat().st_mode & 0o777) == "0o755"
    assert oct((tmp_path / "f.txt").stat().st_mode & 0o777) == "0o644"


def test_generation_config_reaches_hf_outputs(tmp_path):
    """From an mcore checkpoint: the token ids its args carry; from an HF directory (merge-lora): its own file."""
    source = FIXTURES / "hf" / "llama-gqa"
    convert(source, tmp_path / "mc", "hf", "mcore", tp=2, progress=False)
    convert(tmp_path / "mc", tmp_path / "hf", "mcore", "hf", progress=False)
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text()) == {"bos_token_id": 1,
                                                                                    "eos_token_id": 2}
    custom = tmp_path / "custom"
    convert(source, custom, "hf", "hf", progress=False)
    (custom / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5], "temperature": 0.7}))
    merge_lora(custom, FIXTURES / "hf" / "lora-peft", tmp_path / "merged", progress=False)
    assert json.loads((tmp_path / "merged" / "generation_config.json").read_text()) == {"eos_token_id": [2, 5],
                                                                                        "temperature": 0.7}
    assert lazy_load(mcore_fmt.McoreLayout(tmp_path / "mc").file(0, 0))["args"].eos_token_id == 2
