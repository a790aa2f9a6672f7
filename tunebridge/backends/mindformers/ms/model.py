"""MindFormers' own model of a family (LlamaForCausalLM, + its LoRA through pet_config), built from a ModelSpec on
CPU."""

from __future__ import annotations

from typing import Any

from ....model.families import keys as config_keys, mindformers_model
from ....model.spec import ModelSpec


def _context() -> None:
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")


def model_config(spec: ModelSpec, seq_length: int = 64, batch_size: int = 1, pad_token_id: int | None = None):
    """The family's MindFormers config for ``spec``: fp32, rope slicing, no flash attention, unfused RMSNorm (what
    runs on CPU).

    ``pad_token_id`` (LlamaConfig's default: 0) is the input id LlamaForCausalLM drops from both the attention
    keys and the loss; an id outside the vocabulary turns that off.
    """
    import mindformers

    extra = {} if pad_token_id is None else {"pad_token_id": pad_token_id}
    model = mindformers_model(spec)
    return getattr(mindformers, model.config)(
        batch_size=batch_size,
        seq_length=seq_length,
        **config_keys.write(model.keys, spec),
        max_position_embedding=max(seq_length, spec.max_position_embeddings),
        compute_dtype="float32",
        param_init_type="float32",
        layernorm_compute_type="float32",
        softmax_compute_type="float32",
        rotary_dtype="float32",
        use_rope_slice=True,
        use_flash_attention=False,
        use_past=False,
        fused_rms_norm=False,
        checkpoint_name_or_path="",
        **extra,
    )


def network(spec: ModelSpec, config):
    """The family's MindFormers network (its arch class) from a config of :func:`model_config`."""
    import mindformers

    return getattr(mindformers, mindformers_model(spec).arch)(config)


def build(
    spec: dict, pet: dict | None = None, seq_length: int = 64, batch_size: int = 1, pad_token_id: int | None = None
):
    """The MindFormers model for a ModelSpec dict, wrapped with LoRA when ``pet`` (a pet_config) is given."""
    _context()
    from mindformers.pet import get_pet_model

    model_spec = ModelSpec(**spec)
    model = network(model_spec, model_config(model_spec, seq_length, batch_size, pad_token_id))
    return get_pet_model(model, dict(pet)) if pet else model


def load_for_inference(model, ckpt_path: str) -> None:
    """Every parameter of ``model`` from the .ckpt and every tensor of the .ckpt used, else a named error; eval mode."""
    import mindspore as ms

    not_loaded, unused = ms.load_param_into_net(model, ms.load_checkpoint(ckpt_path), strict_load=True)
    if not_loaded or unused:
        from ....errors import TunebridgeError

        raise TunebridgeError(
            f"{ckpt_path}: parameters not loaded {sorted(not_loaded)[:5]}, "
            f"unused checkpoint tensors {sorted(unused)[:5]}"
        )
    model.set_train(False)


def describe(spec: dict, pet: dict | None = None) -> dict:
    """Parameter names, shapes and trainability of the built model."""
    model = build(spec, pet)
    params: dict[str, dict[str, Any]] = {
        p.name: {"shape": list(p.shape), "trainable": bool(p.requires_grad)} for p in model.get_parameters()
    }
    return {
        "params": params,
        "trainable_params": sum(_numel(v["shape"]) for v in params.values() if v["trainable"]),
        "total_params": sum(_numel(v["shape"]) for v in params.values()),
    }


def describe_many(cases: list[dict]) -> list[dict]:
    """:func:`describe` for several (spec, pet) cases in one process (MindSpore starts in seconds)."""
    import mindformers
    import mindspore

    versions = {"mindspore": mindspore.__version__, "mindformers": mindformers.__version__}
    return [{**describe(c["spec"], c.get("pet")), **versions} for c in cases]


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def logits(spec: dict, ckpt_path: str, input_ids_path: str, out_path: str, pet: dict | None = None) -> dict:
    """Full-sequence fp32 logits of MindFormers' model loaded from a .ckpt (every parameter must load)."""
    import mindspore as ms
    import numpy as np

    ids = np.load(input_ids_path).astype(np.int32)
    model = build(spec, pet, seq_length=ids.shape[1], batch_size=ids.shape[0])
    load_for_inference(model, ckpt_path)
    out = model(ms.Tensor(ids))
    values = (out[0] if isinstance(out, tuple) else out).asnumpy()
    np.save(out_path, values.reshape(ids.shape[0], ids.shape[1], -1).astype(np.float32))
    return {"shape": list(ids.shape), "vocab": int(values.shape[-1])}
