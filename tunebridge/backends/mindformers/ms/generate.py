"""Greedy decoding and token log-probabilities through MindFormers' LlamaForCausalLM (CPU, fp32, one process).

Called from ``.venv`` through the bridge with token ids (tokenizing and decoding stay there). The model is
built once for the longest row of the call and runs in Graph mode on one input shape, [batch_size,
seq_length]: rows are right-padded to that length and batches filled up with padding rows, so the graph
compiles once (a few seconds; PyNative takes about a second per forward even for a tiny model). The causal
mask is built for exactly ``seq_length`` anyway (MindFormers slices it only under ``ENFORCE_EAGER``).

LlamaForCausalLM also masks every key whose input id equals ``pad_token_id`` (LlamaConfig's default: 0, a
real token of some vocabularies, and one a model may generate): it is set outside the vocabulary, so only
the causal mask acts, as in transformers and megatron-core; right padding never reaches a row's last real
position.
"""

from __future__ import annotations

from ....evaluation.greedy import greedy as greedy_loop, right_padded
from ....model.spec import ModelSpec
from .model import load_for_inference, model_config, network


def _load(spec: dict, ckpt_path: str, seq_length: int, batch_size: int):
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    model_spec = ModelSpec(**spec)
    config = model_config(model_spec, seq_length=seq_length, batch_size=batch_size)
    config.pad_token_id = model_spec.vocab_size
    model = network(model_spec, config)
    load_for_inference(model, ckpt_path)
    return model


def _logits(model, rows: list[list[int]], pad_id: int, width: int, batch_size: int):
    """[len(rows), width, vocab] fp32 numpy logits of ``rows`` (at most ``batch_size``), run as one
    [batch_size, width] input, and each row's last position."""
    import mindspore as ms
    import numpy as np

    ids, last = right_padded(rows, pad_id, width)
    ids += [[pad_id] * width] * (batch_size - len(ids))
    out = model(ms.Tensor(np.array(ids, dtype=np.int32)))
    values = (out[0] if isinstance(out, tuple) else out).asnumpy().astype(np.float32)
    return values.reshape(batch_size, width, -1)[: len(rows)], last


def generate(
    spec: dict,
    ckpt_path: str,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int | list[int] | None,
    pad_id: int,
    batch_size: int,
) -> list[list[int]]:
    """New token ids after each prompt (greedy, stopping at ``eos_id``), in input order."""
    import numpy as np

    width = max(len(p) for p in prompts) + max_new_tokens
    batch_size = min(batch_size, len(prompts))
    model = _load(spec, ckpt_path, width, batch_size)

    def next_tokens(rows: list[list[int]]) -> list[int]:
        logits, last = _logits(model, rows, pad_id, width, batch_size)
        return [int(np.argmax(logits[i, pos])) for i, pos in enumerate(last)]

    return greedy_loop(next_tokens, prompts, max_new_tokens, eos_id, batch_size)


def logprobs(
    spec: dict, ckpt_path: str, rows: list[list[int]], picks: list[list[int]], pad_id: int, batch_size: int
) -> list[float]:
    """log p(target | row[:position + 1]) for each pick (row, position, target)."""
    import numpy as np

    width = max(len(r) for r in rows)
    batch_size = min(batch_size, len(rows))
    model = _load(spec, ckpt_path, width, batch_size)
    out = [0.0] * len(picks)
    for start in range(0, len(rows), batch_size):
        logits, _ = _logits(model, rows[start : start + batch_size], pad_id, width, batch_size)
        for j, (r, pos, target) in enumerate(picks):
            if start <= r < start + batch_size:
                z = logits[r - start, pos].astype(np.float64)
                m = z.max()
                out[j] = float(z[target] - m - np.log(np.exp(z - m).sum()))
    return out
