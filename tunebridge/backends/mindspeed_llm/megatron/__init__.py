"""megatron-core on CPU as the reference for MindSpeed-LLM.

- :mod:`.cpu`      CPU/gloo work-arounds for megatron-core 0.16.1, ``init_parallel``
- :mod:`.model`    ``build_gpt`` (one pipeline stage of a ModelSpec), ``stage_tensor_names``
- :mod:`.lora`     MindSpeed-LLM-style fused LoRA: ``apply_lora``
- :mod:`.weights`  canonical weights -> per-rank mcore state dicts: ``mcore_shards``, ``merge_lora``
- :mod:`.forward`  ``mcore_logits`` (spawns the ranks), ``stage_forward`` (inside a rank)
- :mod:`.launch`   ``run`` a function on tp*pp gloo processes

Submodules import megatron-core (a few seconds); this package module does not.
"""

import warnings

# megatron-core on CPU (no Apex, Transformer Engine or CUDA) warns about each of those at import and build time,
# in every rank; expected here, so kept out of tunebridge's output.
warnings.filterwarnings("ignore", category=UserWarning, module=r"megatron\.")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"megatron\.")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed\.")
