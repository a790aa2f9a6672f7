"""What one rank of a megatron-core model holds: tensor names, shapes and trainable counts.

Used to check tunebridge's accounting and dialect tables against the real framework.
"""

from __future__ import annotations

from ....model.spec import ModelSpec


def stage_census(
    spec: ModelSpec,
    num_layer_list: list[int] | None = None,
    lora_modules: list[str] | None = None,
    rank: int = 8,
    alpha: float = 16.0,
) -> dict:
    """Build this rank's stage (inside a :func:`tunebridge.backends.mindspeed_llm.megatron.launch.run` rank) and describe it.

    Without ``lora_modules`` every parameter is trainable (full fine-tuning). Over expert-parallel ranks
    (``launch.run(..., ep=N)``) a mixture of experts' MoE layers hold this ``ep_rank``'s experts only.
    """
    from megatron.core import parallel_state
    from megatron.core.transformer.moe.moe_layer import BaseMoELayer

    from .lora import apply_lora
    from .model import build_gpt, model_state_dict

    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    ep = parallel_state.get_expert_model_parallel_world_size()
    model = build_gpt(spec, tp, pp, num_layer_list, ep=ep)
    if lora_modules:
        apply_lora(model, lora_modules, rank, alpha)
    params = list(model.parameters())
    moe = next((m for m in model.modules() if isinstance(m, BaseMoELayer)), None)
    return {
        "tp_rank": parallel_state.get_tensor_model_parallel_rank(),
        "pp_rank": parallel_state.get_pipeline_model_parallel_rank(),
        "ep_rank": parallel_state.get_expert_model_parallel_rank(),
        "experts": list(moe.local_expert_indices) if moe is not None else [],  # global indices of the local experts
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "total": sum(p.numel() for p in params),
        "shapes": {k: list(v.shape) for k, v in model_state_dict(model).items()},
    }


def census_many(cases: list[dict]) -> list[dict]:
    """:func:`stage_census` for several cases in one world (spawning ranks costs seconds)."""
    return [stage_census(**case) for case in cases]
