"""A mixture of experts' auxiliary load-balancing loss as megatron-core defines it, for the torch backend.

Megatron's ``aux_loss`` (``--moe-router-load-balancing-type aux_loss --moe-aux-loss-coeff c``; megatron-core 0.16.1
``transformer/moe/moe_utils.py: switch_load_balancing_loss_func``, called per MoE layer by ``router.py:
TopKRouter._apply_aux_loss``; the Switch Transformer loss) of one layer over its ``T`` routed tokens and ``E``
experts, each token sent to ``k``:

    P_i = sum over tokens of softmax(router logits)_i        (the scores, fp32, every token)
    f_i = how many tokens' top-k (by those scores) holds i    (no gradient)
    aux = E * c / (k * T * T) * sum_i P_i * f_i

"Tokens" are every position the router sees: the padding of a micro-batch included (megatron-core is given no
padding mask by MindSpeed-LLM's SFT step). The layers' terms are summed; the term reaches the gradient only (its
``MoEAuxLossAutoScaler`` attaches it to the router's output), scaled like the language-model loss of its
micro-batch: divided by the number of micro-batches, or, with per-token loss (``--calculate-per-token-loss``),
multiplied by the micro-batch's routed tokens before the global division by supervised tokens
(``router.py: attach_and_log_load_balancing_loss``, ``pipeline_parallel/schedules.py: forward_step_calc_loss``).
The reported LM loss leaves it out; Megatron logs ``load_balancing_loss`` = aux / c averaged over the MoE layers
and the micro-batches (``moe_utils.py: track_moe_metrics``).

transformers' own ``load_balancing_loss_func`` (Qwen3-MoE ``router_aux_loss_coef``) is another loss: it pools the
tokens of all layers into one term, has no 1 / k, and is added into ``loss``; tunebridge does not use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def switch_load_balancing_loss(router_logits: torch.Tensor, topk: int, coeff: float) -> torch.Tensor:
    """Megatron's auxiliary loss of one MoE layer from its router logits ``[T, E]`` (softmax scores, top-k)."""
    scores = torch.softmax(router_logits, dim=-1, dtype=torch.float32)
    chosen = torch.topk(scores, k=topk, dim=1).indices
    tokens_per_expert = torch.zeros_like(router_logits, dtype=torch.int).scatter(1, chosen, 1).sum(dim=0)
    num_tokens, num_experts = scores.shape
    # the factor as megatron-core forms it (a Python float), so the value is bit-for-bit its own
    return torch.sum(scores.sum(dim=0) * tokens_per_expert) * (num_experts * coeff / (topk * num_tokens * num_tokens))


def layer_losses(router_logits: Sequence[torch.Tensor], topk: int, coeff: float) -> list[torch.Tensor]:
    """Each MoE layer's auxiliary loss (transformers' ``output_router_logits``: one ``[T, E]`` per layer)."""
    return [switch_load_balancing_loss(logits, topk, coeff) for logits in router_logits]


def logged(aux_per_micro_batch: Sequence[Sequence[float]], coeff: float) -> float:
    """Megatron's ``load_balancing_loss`` of a step: aux / c per layer, summed over the layers and micro-batches,
    divided by the number of MoE layers and of micro-batches."""
    layers = len(aux_per_micro_batch[0])
    return sum(sum(m) for m in aux_per_micro_batch) / coeff / layers / len(aux_per_micro_batch)
