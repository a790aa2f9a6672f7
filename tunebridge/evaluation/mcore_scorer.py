"""A :class:`~tunebridge.evaluation.scorer.Scorer` through megatron-core's GPTModel (MindSpeed-LLM's model).

The model is an mcore checkpoint directory (``tunebridge convert --to mcore``: any tp x pp, uneven
``--num-layer-list``, vocab padding), optionally with a LoRA-only mcore adapter (``convert-adapter --to
mcore``: fused ``lora_A/B`` applied with alpha / r from its args). Every call runs in ONE world of tp*pp gloo
processes — all prompts, all decode steps — since starting one costs seconds. Each rank loads its own rank
file (fp32). Greedy decoding recomputes every live row at each step (:mod:`tunebridge.evaluation.greedy`);
the last stage picks the argmax and broadcasts it so every rank walks the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..converters.formats import mcore as mcore_fmt
from ..errors import TunebridgeError
from ..model.spec import ModelSpec
from .greedy import greedy, right_padded
from .token_scorer import TokenScorer


@dataclass(frozen=True)
class McoreCheckpoint:
    """What each rank needs to rebuild and load its part of the model."""

    root: str
    spec: ModelSpec
    tp: int
    pp: int
    num_layer_list: list[int] | None
    make_vocab_size_divisible_by: int
    adapter: str | None = None

    @classmethod
    def open(cls, root: str | Path, adapter: str | Path | None = None) -> McoreCheckpoint:
        layout = mcore_fmt.McoreLayout(root)
        args = mcore_fmt.load_rank_file(layout.file(0, 0)).get("args")
        if args is None:
            raise TunebridgeError(f"{layout.file(0, 0)}: no args saved: cannot tell the model")
        nll = getattr(args, "num_layer_list", None)
        if adapter is not None:
            a = mcore_fmt.McoreLayout(adapter)
            a_nll = getattr(mcore_fmt.load_rank_file(a.file(0, 0)).get("args"), "num_layer_list", None)
            if (a.tp, a.pp, a_nll) != (layout.tp, layout.pp, nll):
                raise TunebridgeError(
                    f"{adapter}: the adapter is tp {a.tp} x pp {a.pp} (num_layer_list {a_nll}), "
                    f"the model {root} tp {layout.tp} x pp {layout.pp} (num_layer_list {nll})"
                )
        return cls(
            str(root),
            mcore_fmt.spec_from_args(args, Path(root).name),
            layout.tp,
            layout.pp,
            mcore_fmt.saved_layer_list(args),
            int(getattr(args, "make_vocab_size_divisible_by", 1) or 1),
            str(adapter) if adapter is not None else None,
        )

    @property
    def answering_rank(self) -> int:
        """Global rank of (last stage, tp rank 0): where logits end up."""
        return (self.pp - 1) * self.tp


def _rank_state(root: str, pp_rank: int, tp_rank: int) -> tuple[dict[str, torch.Tensor], object]:
    saved = mcore_fmt.load_rank_file(mcore_fmt.McoreLayout(root).file(tp_rank, pp_rank))
    return {k: v.float() for k, v in saved["model"].items()}, saved.get("args")


def _under_base_layer(state: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """Base tensors renamed where the LoRA-wrapped model keeps them (``X.weight`` -> ``X.base_layer.weight``)."""
    renamed = {}
    for k, v in state.items():
        module, leaf = k.rsplit(".", 1)
        wrapped = f"{module}.base_layer.{leaf}"
        renamed[wrapped if wrapped in names else k] = v
    return renamed


def _load_rank_model(ckpt: McoreCheckpoint) -> torch.nn.Module:
    from megatron.core import parallel_state

    from ..backends.mindspeed_llm.megatron.forward import lora_in
    from ..backends.mindspeed_llm.megatron.lora import apply_lora
    from ..backends.mindspeed_llm.megatron.model import build_gpt

    pp_rank = parallel_state.get_pipeline_model_parallel_rank()
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    state, _ = _rank_state(ckpt.root, pp_rank, tp_rank)
    model = build_gpt(ckpt.spec, ckpt.tp, ckpt.pp, ckpt.num_layer_list, ckpt.make_vocab_size_divisible_by)
    if ckpt.adapter is not None:
        lora, args = _rank_state(ckpt.adapter, pp_rank, tp_rank)
        found = lora_in(lora)
        alpha = getattr(args, "lora_alpha", None)
        if found is None or alpha is None:
            raise TunebridgeError(
                f"{ckpt.adapter}: not a LoRA mcore adapter (no lora_A tensors or no lora_alpha in its args)"
            )
        modules, rank = found
        apply_lora(model, modules, rank, float(alpha))
        state = {**_under_base_layer(state, set(model.state_dict())), **lora}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _stage_logits(model: torch.nn.Module, spec: ModelSpec, rows: list[list[int]], pad_id: int):
    from ..backends.mindspeed_llm.megatron.forward import stage_forward

    ids, last = right_padded(rows, pad_id)
    return stage_forward(model, torch.tensor(ids), spec), last


@torch.no_grad()
def generate_rank(
    ckpt: McoreCheckpoint,
    prompts: list[list[int]],
    max_new_tokens: int,
    eos_id: int | list[int] | None,
    pad_id: int,
    batch_size: int,
) -> list[list[int]] | None:
    """Per-rank greedy decoding; the answering rank returns the new ids."""
    model = _load_rank_model(ckpt)

    def next_tokens(rows: list[list[int]]) -> list[int]:
        logits, last = _stage_logits(model, ckpt.spec, rows, pad_id)
        picks = torch.zeros(len(rows), dtype=torch.long)
        if logits is not None:
            picks = logits[torch.arange(len(rows)), torch.tensor(last)].float().argmax(-1)
        torch.distributed.broadcast(picks, src=ckpt.answering_rank)
        return picks.tolist()

    new = greedy(next_tokens, prompts, max_new_tokens, eos_id, batch_size)
    return new if torch.distributed.get_rank() == ckpt.answering_rank else None


@torch.no_grad()
def logprobs_rank(
    ckpt: McoreCheckpoint, rows: list[list[int]], picks: list[tuple[int, int, int]], pad_id: int, batch_size: int
) -> list[float] | None:
    """Per-rank log-probabilities of each (row, position, target); the answering rank returns them."""
    model = _load_rank_model(ckpt)
    out = [0.0] * len(picks)
    for start in range(0, len(rows), batch_size):
        logits, _ = _stage_logits(model, ckpt.spec, rows[start : start + batch_size], pad_id)
        if logits is None:
            continue
        mine = [j for j, (r, _, _) in enumerate(picks) if start <= r < start + batch_size]
        r, pos, target = (torch.tensor([picks[j][k] for j in mine]) for k in range(3))
        lp = torch.log_softmax(logits[r - start, pos].float(), dim=-1).gather(1, target[:, None])[:, 0]
        for j, value in zip(mine, lp.tolist()):
            out[j] = value
    return out if torch.distributed.get_rank() == ckpt.answering_rank else None


class McoreScorer(TokenScorer):
    name = "mcore"

    def __init__(
        self,
        mcore_dir: str | Path,
        tokenizer=None,
        adapter: str | Path | None = None,
        batch_size: int = 8,
        timeout_s: float = 1800.0,
    ):
        from .tokens import load_eval_tokenizer

        self.checkpoint = McoreCheckpoint.open(mcore_dir, adapter)
        self.timeout_s = timeout_s
        super().__init__(
            tokenizer or load_eval_tokenizer(None), self.checkpoint.spec.max_position_embeddings, batch_size
        )

    def _run(self, fn, *args):
        from ..backends.mindspeed_llm.megatron import launch

        ckpt = self.checkpoint
        return launch.run(fn, ckpt.tp, ckpt.pp, args=(ckpt, *args), timeout_s=self.timeout_s)[ckpt.answering_rank]

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, eos_id: int | list[int] | None
    ) -> list[list[int]]:
        return self._run(generate_rank, prompts, max_new_tokens, eos_id, self.pad_id, self.batch_size)

    def _pick_logprobs(self, rows: list[list[int]], picks: list[tuple[int, int, int]]) -> list[float]:
        return self._run(logprobs_rank, rows, picks, self.pad_id, self.batch_size)
