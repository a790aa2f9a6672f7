"""Run MindSpeed-LLM's own checkpoint converter (``convert_ckpt_v2.py``) on CPU.

    python scripts/mindspeed_llm/run_converter.py MINDSPEED_LLM_CHECKOUT -- CONVERTER_ARGS...

The converter itself is pure torch; three things tie it to an Ascend host, and only those are replaced here:
``mindspeed_llm.training.utils`` (imports ``acl`` and ``torch_npu`` for the ``auto_coverage`` decorator the
entry point wears) by a module holding a pass-through decorator, ``Tensor.npu()`` (the LoRA merge moves
tensors to the NPU to multiply) by the identity, and the Megatron adaptor ``mindspeed_llm/__init__`` imports
(``mindspeed_llm.tasks.megatron_adaptor_v2``: it patches Megatron for torch_npu, which the converter does not
use) by an empty module. Master imports the adaptor only unless ``TRAINING_BACKEND=none``, which is set too;
2.3.0 imports it always. Run it with an interpreter that has torch, safetensors, numpy and tqdm
(MindSpeed-LLM pins transformers 4.57.1; the converter does not import it).
"""
from __future__ import annotations

import os
import runpy
import sys
import types
from pathlib import Path


def _stub_npu_modules() -> None:
    utils = types.ModuleType("mindspeed_llm.training.utils")
    utils.auto_coverage = lambda func: func
    sys.modules["mindspeed_llm.training.utils"] = utils
    sys.modules["mindspeed_llm.tasks.megatron_adaptor_v2"] = types.ModuleType("mindspeed_llm.tasks.megatron_adaptor_v2")
    import torch
    torch.Tensor.npu = lambda self, *args, **kwargs: self


def main(argv: list[str]) -> None:
    if len(argv) < 2 or "--" not in argv:
        sys.exit("usage: run_converter.py MINDSPEED_LLM_CHECKOUT [--entry convert_ckpt_v2.py] -- CONVERTER_ARGS...")
    split = argv.index("--")
    checkout, options, converter_args = Path(argv[1]).resolve(), argv[2:split], argv[split + 1:]
    entry = options[options.index("--entry") + 1] if "--entry" in options else "convert_ckpt_v2.py"
    script = checkout / entry
    if not script.is_file():
        sys.exit(f"run_converter.py: {script} not found (is {checkout} a MindSpeed-LLM checkout?)")
    os.environ["TRAINING_BACKEND"] = "none"
    sys.path.insert(0, str(checkout))
    _stub_npu_modules()
    sys.argv = [str(script), *converter_args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main(sys.argv)
