"""A :class:`~tunebridge.evaluation.scorer.Scorer` through MindFormers' LlamaForCausalLM (``.venv-mindspore``).

The model is a MindFormers ``.ckpt`` (``tunebridge convert --to mindformers`` writes ``model.ckpt`` with the
HF ``config.json`` beside it, which gives the architecture; a bare ``.ckpt`` needs ``spec``). Text is
tokenized and decoded here; token ids go over the bridge as JSON and each call is ONE MindSpore process
(:mod:`tunebridge.backends.mindformers.ms.generate`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import TunebridgeError
from ..model.spec import ModelSpec
from .token_scorer import TokenScorer


def find_ckpt(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        return path
    found = sorted(path.glob("*.ckpt")) if path.is_dir() else []
    if len(found) != 1:
        raise TunebridgeError(f"{path}: expected a .ckpt file or a directory with one, found {len(found)}")
    return found[0]


class MindFormersScorer(TokenScorer):
    name = "mindformers"

    def __init__(
        self,
        ckpt_dir_or_file: str | Path,
        tokenizer=None,
        spec: ModelSpec | None = None,
        batch_size: int = 8,
        timeout_s: float | None = None,
    ):
        from .tokens import load_eval_tokenizer

        self.ckpt = find_ckpt(ckpt_dir_or_file).resolve()
        if spec is None:
            config = self.ckpt.parent / "config.json"
            if not config.exists():
                raise TunebridgeError(
                    f"{self.ckpt}: a MindFormers .ckpt carries no model config and there is no config.json beside it"
                )
            try:
                spec = ModelSpec.from_hf_config(config)
            except ValueError as e:
                raise TunebridgeError(str(e)) from None
        self.spec = spec
        self.timeout_s = timeout_s
        super().__init__(tokenizer or load_eval_tokenizer(None), spec.max_position_embeddings, batch_size)

    def _call(self, function: str, **kwargs):
        from ..backends.mindformers.bridge import call_mindspore

        return call_mindspore(
            "backends.mindformers.ms.generate",
            function,
            timeout=self.timeout_s,
            spec=self.spec.to_dict(),
            ckpt_path=str(self.ckpt),
            pad_id=self.pad_id,
            batch_size=self.batch_size,
            **kwargs,
        )

    def _generate_ids(
        self, prompts: list[list[int]], max_new_tokens: int, eos_id: int | list[int] | None
    ) -> list[list[int]]:
        return self._call("generate", prompts=prompts, max_new_tokens=max_new_tokens, eos_id=eos_id)

    def _pick_logprobs(self, rows: list[list[int]], picks: list[tuple[int, int, int]]) -> list[float]:
        return self._call("logprobs", rows=rows, picks=[list(p) for p in picks])
