"""Tokenize instruction samples with a template: token ids plus labels (-100 where not supervised)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import TunebridgeError
from .templates import Template

IGNORE = -100
EMBEDDED_TOKENIZER = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"


@dataclass(frozen=True)
class Sample:
    """Unshifted token ids and labels of one sample (labels[t] is the target id at position t, or -100)."""
    input_ids: list[int]
    labels: list[int]


def load_tokenizer(path: str | Path | None = None):
    """An HF tokenizer directory (tokenizer.json or sentencepiece), or the embedded one when ``path`` is None."""
    from transformers import AutoTokenizer
    where = Path(path) if path else EMBEDDED_TOKENIZER
    try:
        return AutoTokenizer.from_pretrained(str(where), local_files_only=True)
    except (OSError, ValueError) as e:
        raise TunebridgeError(f"{where}: not a tokenizer directory ({e})") from None


def alpaca_query(instruction: str, query: str = "") -> str:
    """MindSpeed-LLM's user turn for Alpaca records: instruction, then the input on its own line if any."""
    return f"{instruction}\n{query}" if query else instruction


def encode(tokenizer, template: Template, query: str, response: str, system: str | None = None) -> Sample:
    prompt = tokenizer.encode(template.prompt(query, system), add_special_tokens=False)
    if template.bos_prefix and tokenizer.bos_token_id is not None:
        prompt = [tokenizer.bos_token_id] + prompt
    end = tokenizer.convert_tokens_to_ids(template.end) if template.end else tokenizer.eos_token_id
    if end is None or (template.end and end == tokenizer.unk_token_id):
        raise TunebridgeError(f"the tokenizer has no {template.end or 'eos'} token, which template "
                              f"{template.name!r} ends answers with")
    answer = tokenizer.encode(response, add_special_tokens=False) + [end]
    return Sample(prompt + answer, [IGNORE] * len(prompt) + answer)
