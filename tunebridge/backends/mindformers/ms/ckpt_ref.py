"""MindSpore's own checkpoint writer and reader, as the reference for tunebridge.converters.formats.msckpt (tests)."""

from __future__ import annotations

import numpy as np


def save_reference(npz_path: str, ckpt_path: str, bf16: list[str]) -> None:
    """``mindspore.save_checkpoint`` of the arrays in ``npz_path`` (names in ``bf16`` stored as BFloat16;
    their float32 values must be exactly representable)."""
    import mindspore as ms

    arrays = np.load(npz_path)
    params = []
    for name in arrays.files:
        value = arrays[name]
        tensor = ms.Tensor(value, dtype=ms.bfloat16) if name in bf16 else ms.Tensor(value)
        params.append({"name": name, "data": tensor})
    ms.save_checkpoint(params, ckpt_path)


def load_reference(ckpt_path: str, npz_path: str) -> dict:
    """``mindspore.load_checkpoint``: arrays (BFloat16 widened to float32) into ``npz_path``; dtypes returned."""
    import mindspore as ms

    loaded = ms.load_checkpoint(ckpt_path)
    out, dtypes = {}, {}
    for name, param in loaded.items():
        dtypes[name] = str(param.dtype)
        out[name] = (param.astype(ms.float32) if param.dtype == ms.bfloat16 else param).asnumpy()
    np.savez(npz_path, **out)
    return dtypes
