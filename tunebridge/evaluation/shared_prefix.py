"""Attention for a batch whose rows all start with the same prefix (a subject's shot text), its keys and
values held once instead of once per row.

Registered with transformers' ``AttentionInterface``: a model switched to it (:func:`install`) runs its own
layers (projections, rotary embeddings, norms, MLP) and calls this for attention. Without a
``tunebridge_shared_prefix`` keyword in the forward call it is transformers' ``sdpa`` attention, unchanged.
With one (per layer: the prefix's keys and values, [1, kv heads, prefix length, head dim]), the layer's cache
holds only the rows' own tokens, and each query's attention is the softmax over prefix and own keys together,
computed as two attentions merged by their log-sum-exp (cascade attention): every query of every row attends
to the one copy of the prefix in a single unmasked call; its own keys come with the caller's mask.
"""

from __future__ import annotations

import torch

NAME = "tunebridge_shared_prefix"
KEYWORD = "tunebridge_shared_prefix"

_registered = False


def _attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention and the log-sum-exp of each query's scores ([b, h, q], float32)."""
    if query.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, is_causal=is_causal, attn_mask=mask, scale=scale
        )
        return out, lse.float()
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if is_causal:
        q, k = scores.shape[-2:]
        scores = scores.masked_fill(
            torch.ones(q, k, dtype=torch.bool, device=scores.device).triu(k - q + 1), float("-inf")
        )
    if mask is not None:
        scores = scores + mask.float()
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul(torch.exp(scores - lse[..., None]), value.float()).to(query.dtype), lse


def attention(
    module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    prefix = kwargs.pop(KEYWORD, None)
    if prefix is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    prefix_key, prefix_value = prefix[module.layer_idx]
    rows, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    # the prefix: all rows' queries folded into one sequence per key-value head (query head i reads kv head
    # i // groups, as repeat_kv pairs them), no mask: every query sees the whole prefix
    folded = query.view(rows, kv_heads, groups, length, dim).transpose(0, 1).reshape(1, kv_heads, -1, dim)
    shared_out, shared_lse = _attend(folded, prefix_key, prefix_value, None, scale)
    shared_out = shared_out.view(kv_heads, rows, groups, length, dim).transpose(0, 1).reshape(query.shape)
    shared_lse = shared_lse.reshape(kv_heads, rows, groups, length).transpose(0, 1).reshape(rows, heads, length)
    # the rows' own tokens, under the caller's mask (none: causal when a whole row is new, else all visible)
    own_out, own_lse = _attend(
        query,
        repeat_kv(key, groups),
        repeat_kv(value, groups),
        attention_mask,
        scale,
        is_causal=attention_mask is None and length > 1,
    )
    top = torch.maximum(shared_lse, own_lse)
    shared_weight, own_weight = torch.exp(shared_lse - top)[..., None], torch.exp(own_lse - top)[..., None]
    out = (shared_out.float() * shared_weight + own_out.float() * own_weight) / (shared_weight + own_weight)
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def install(model) -> bool:
    """Switch ``model`` to this attention if it runs transformers' sdpa attention on full (not sliding-window)
    causal layers; False (the model unchanged) otherwise."""
    global _registered
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    if (
        set(getattr(config, "layer_types", None) or ["full_attention"]) != {"full_attention"}
        or getattr(config, "use_sliding_window", False)
        or (getattr(config, "sliding_window", None) is not None and not hasattr(config, "use_sliding_window"))
    ):
        return False
    if not _registered:
        AttentionInterface.register(NAME, attention)
        AttentionMaskInterface.register(NAME, sdpa_mask)
        _registered = True
    model.set_attn_implementation(NAME)
    return True


def layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the keys and values a transformers cache holds."""
    return [(layer.keys, layer.values) for layer in cache.layers]
