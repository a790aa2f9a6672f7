"""Greedy decoding and log-likelihood over token ids, whatever framework computes the logits.

Plain Python on purpose (no torch, no numpy): the MindSpore side imports it in ``.venv-mindspore`` as the
megatron-core ranks do in ``.venv``, so both decode by the same rules as :class:`HFScorer` (transformers'
greedy ``generate``): the argmax after each row, a row stops once it has produced ``eos_id`` (kept in its
ids; decoding drops it as a special token), at most ``max_new_tokens`` new tokens.

Logits come from a full recompute of every live row at every step, right-padded: under a causal mask the
padding after a row never reaches its last real position, so this is exact (and cheap on tiny models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# rows of token ids -> the argmax next token after each row
NextTokens = Callable[[list[list[int]]], list[int]]


def greedy(
    next_tokens: NextTokens,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_id: int | list[int] | None,
    batch_size: int,
) -> list[list[int]]:
    """New token ids after each prompt, in input order; ``batch_size`` prompts are decoded together."""
    stops = set(eos_id) if isinstance(eos_id, (list, tuple, set)) else {eos_id}
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = [list(p) for p in prompts[start : start + batch_size]]
        generated: list[list[int]] = [[] for _ in chunk]
        live = list(range(len(chunk)))
        for _ in range(max_new_tokens):
            if not live:
                break
            picks = next_tokens([chunk[i] + generated[i] for i in live])
            for i, token in zip(live, picks):
                generated[i].append(token)
            live = [i for i in live if generated[i][-1] not in stops]
        out.extend(generated)
    return out


def right_padded(
    rows: Sequence[Sequence[int]], pad_id: int, width: int | None = None
) -> tuple[list[list[int]], list[int]]:
    """Rows padded on the right to ``width`` (default: the longest), and each row's last real position."""
    width = width or max(len(r) for r in rows)
    return [list(r) + [pad_id] * (width - len(r)) for r in rows], [len(r) - 1 for r in rows]


def shared_prefix(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least one token of its own (0 for one row)."""
    if len(rows) < 2:
        return 0
    first, n = rows[0], min(len(r) for r in rows) - 1
    for i in range(n):
        if any(r[i] != first[i] for r in rows):
            return i
    return max(n, 0)


# A prefix run once costs a forward of its own: share it only when that saves this many token computations.
SHARING_PAYS = 256


def worth_sharing(rows: Sequence[Sequence[int]]) -> int:
    """The shared prefix to run once (:func:`shared_prefix`), or 0 when running it separately saves too little."""
    n = shared_prefix(rows)
    return n if n * (len(rows) - 1) >= SHARING_PAYS else 0


def length_buckets(lengths: Sequence[int], overhead: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into padded batches at the least cost: sum over batches of ``overhead`` +
    rows x longest length (an exact split of the sorted lengths, by dynamic programming)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best, cut = [0] + [0] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        best[j], cut[j] = min((best[i] + overhead + (j - i) * lengths[order[j - 1]], i) for i in range(j))
    groups, j = [], n
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def loglik_plan(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
) -> tuple[list[list[int]], list[tuple[int, int, int]], list[int]]:
    """What to compute for the log-likelihood of each (context ids, continuation ids) pair.

    Returns the rows to run (context + continuation[:-1], shared by pairs that differ only in their last
    token), the picks (row, position, target token) whose log-probabilities are needed, and the pair
    each pick belongs to — as :class:`HFScorer` plans them.
    """
    rows: dict[tuple[int, ...], int] = {}
    for ctx, cont in pairs:
        rows.setdefault(tuple(ctx) + tuple(cont[:-1]), len(rows))
    picks, pair_of = [], []
    for i, (ctx, cont) in enumerate(pairs):
        row = rows[tuple(ctx) + tuple(cont[:-1])]
        for k, token in enumerate(cont):
            picks.append((row, len(ctx) - 1 + k, token))
            pair_of.append(i)
    return [list(r) for r in rows], picks, pair_of


def sum_by_pair(token_logprobs: Sequence[float], pair_of: Sequence[int], n_pairs: int) -> list[float]:
    sums = [0.0] * n_pairs
    for lp, i in zip(token_logprobs, pair_of):
        sums[i] += float(lp)
    return sums
