"""Run megatron-core 0.16.1 on CPU over gloo: the smallest set of work-arounds, applied by one function.

megatron-core hard-codes CUDA in a few places a CPU forward (and a tied-embedding pipeline set-up) reaches:

- ``RotaryEmbedding.get_emb`` moves ``inv_freq`` to ``torch.cuda.current_device()``;
- ``GlobalMemoryBuffer.get_tensor`` (attention's matmul buffer, TP gathers) allocates on CUDA;
- the TP collectives in ``tensor_parallel.mappings`` (gathering logits over TP ranks, ...) allocate
  their outputs on ``torch.cuda.current_device()``;
- ``LanguageModule.setup_embeddings_and_output_layer`` calls ``.cuda()`` on the word embeddings
  before all-reducing the tied copy between the first and last pipeline stage;
- ``Router.gating`` (mixture of experts) moves the router's weight to ``torch.cuda.current_device()``;
- without Transformer Engine, ``moe_utils`` never defines the ``te_general_gemm`` its router gating tests for
  ``None``: :func:`patch_megatron_for_cpu` defines it as None (the plain ``torch.mm`` path);
- ``get_default_causal_mask`` (taken when ``attention_mask`` is None) builds the mask on CUDA:
  callers pass an explicit bool causal mask instead (see :func:`causal_mask`);
- the default RNG tracker keeps CUDA generator states: :func:`init_parallel` installs megatron's
  inference tracker (``fork()`` is a no-op, so dropout draws from the CPU generator);
- the pipeline schedules allocate with ``device="cuda"``: :func:`pipeline_schedule_on_cpu`.

Each patched method runs unchanged, inside a context in which ``torch.cuda.current_device()`` names
the CPU and ``Tensor.cuda()`` is the identity; nothing else is touched and nothing stays swapped.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import warnings
from collections.abc import Callable, Iterator

import torch

TESTED_VERSION = "0.16.1"
_ORIGINAL = "__tunebridge_cpu_original__"


@contextlib.contextmanager
def _cuda_means_cpu() -> Iterator[None]:
    current_device, tensor_cuda = torch.cuda.current_device, torch.Tensor.cuda
    # monkeypatched on purpose: megatron-core asks for a CUDA device index, and CPU is a torch.device, not an int
    torch.cuda.current_device = lambda: torch.device("cpu")  # type: ignore[assignment,return-value]
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.cuda.current_device, torch.Tensor.cuda = current_device, tensor_cuda  # type: ignore[method-assign]


def _on_cpu(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _cuda_means_cpu():
            return fn(*args, **kwargs)

    setattr(wrapper, _ORIGINAL, fn)
    return wrapper


def _targets() -> list[tuple[object, str]]:
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from megatron.core.models.common.language_module.language_module import LanguageModule
    from megatron.core.tensor_parallel import mappings
    from megatron.core.transformer.moe.router import Router
    from megatron.core.utils import GlobalMemoryBuffer

    return [
        (RotaryEmbedding, "get_emb"),
        (GlobalMemoryBuffer, "get_tensor"),
        (LanguageModule, "setup_embeddings_and_output_layer"),
        (Router, "gating"),
        # TP collectives allocate their output buffers on the current CUDA device
        (mappings, "_gather_along_last_dim"),
        (mappings, "_gather_along_first_dim"),
        (mappings, "_reduce_scatter_along_first_dim"),
    ]


def patch_megatron_for_cpu() -> None:
    """Apply the CPU work-arounds (idempotent)."""
    from megatron.core.package_info import __version__

    if __version__ != TESTED_VERSION:
        warnings.warn(
            f"tunebridge's CPU work-arounds were checked on megatron-core {TESTED_VERSION}, this is {__version__}",
            stacklevel=2,
        )
    from megatron.core.transformer.moe import moe_utils

    if not moe_utils.HAVE_TE and not hasattr(moe_utils, "te_general_gemm"):
        moe_utils.te_general_gemm = None
    for owner, name in _targets():
        fn = owner.__dict__[name]
        if not hasattr(fn, _ORIGINAL):
            setattr(owner, name, _on_cpu(fn))


@contextlib.contextmanager
def pipeline_schedule_on_cpu() -> Iterator[None]:
    """Run one of megatron-core's forward-backward schedules on CPU: they create their token counter with
    a literal ``torch.zeros(..., device="cuda")``, p2p buffers on ``torch.cuda.current_device()``, and
    call ``torch.cuda.synchronize()`` after exchanging shapes; inside this context the first two land on
    the CPU and the last is a no-op (gloo's requests have been waited on already)."""
    zeros, synchronize = torch.zeros, torch.cuda.synchronize

    def cpu_zeros(*args, device=None, **kwargs):
        if device is not None and torch.device(device).type == "cuda":
            device = "cpu"
        return zeros(*args, device=device, **kwargs)

    torch.zeros, torch.cuda.synchronize = cpu_zeros, lambda device=None: None
    try:
        with _cuda_means_cpu():
            yield
    finally:
        torch.zeros, torch.cuda.synchronize = zeros, synchronize


def causal_mask(seq_len: int) -> torch.Tensor:
    """Megatron's attention mask for causal attention: [1, 1, s, s], True where attention is masked."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool).triu(diagonal=1)[None, None]


def init_parallel(
    tp: int, pp: int, rank: int, world: int, master_port: int, timeout_s: float = 300.0, ep: int = 1
) -> None:
    """Initialise torch.distributed (gloo, CPU) and megatron's parallel state on this process.

    ``world`` must be a multiple of ``tp * pp * ep`` (the rest is data parallelism; the ``ep`` expert-parallel
    ranks of a mixture of experts are data-parallel ranks of its other layers, expert tp = tp).
    """
    if world % (tp * pp * ep):
        raise ValueError(f"world size {world} is not a multiple of tp*pp*ep = {tp * pp * ep}")
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.random import initialize_rng_tracker

    patch_megatron_for_cpu()
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{master_port}",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, expert_model_parallel_size=ep
    )
    initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
