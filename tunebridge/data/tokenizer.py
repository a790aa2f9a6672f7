"""The tokenizer tunebridge encodes with: the token ids the stack's own tokenizer gives, from the directory alone.

transformers' versions disagree on sentencepiece text, so the rules are named, not inherited from the installed
transformers (tunebridge's .venv has 5.x):

- ``transformers-4`` (default): transformers 4.57.1, the pin of MindSpeed-LLM 2.3.0 and of MindFormers 1.9.0.
  A ``tokenizer.json`` is used as written (the ``tokenizers`` library on the file). A sentencepiece-only
  LlamaTokenizer directory is converted by transformers 4 to a fast tokenizer whose added tokens (the model's
  control and user-defined pieces, bos/eos/unk/pad, ``added_tokens_decoder``) split the text first; with
  ``legacy`` (the default) every other piece of text gets the dummy prefix "▁" and spaces become "▁" (exactly
  sentencepiece's own encoding of that piece); ``legacy: false`` prefixes only the text's start
  (Metaspace ``first``); ``add_prefix_space: false`` never.
- ``transformers-5``: transformers 5.x (MindSpeed-LLM master pins 5.2.0). A LlamaTokenizer ignores the file's
  normalizer: Metaspace ``first`` (``legacy`` false, the default), ``always`` (``legacy: true``: every piece,
  unless it starts with a space) or ``never``.
- ``mindformers``: MindFormers' own LlamaTokenizer as ``llama_preprocess.py`` builds it from ``tokenizer.model``
  alone: only <unk>, <s> and </s> split the text (tokenizer_config.json is not read), legacy prefixes.

Each rule is proven against the stacks' own tokenizers on the golden fixtures (tests/fixtures/data-goldens).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import TunebridgeError, unknown
from .spec import TOKENIZER_RULES

EMBEDDED_TOKENIZER = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
RULES = (*TOKENIZER_RULES, "mindformers")
_LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
_SP_CONTROL, _SP_USER_DEFINED = 3, 4


class Tokenizer:
    """Encode / decode with a stack's rules; the small part of transformers' tokenizer API tunebridge uses."""

    def __init__(self, path: Path, rules: str):
        if rules not in RULES:
            raise TunebridgeError(unknown("tokenizer rules", rules, RULES))
        self.path, self.rules = path, rules
        self.config = _read_config(path)
        llama = self.config.get("tokenizer_class") in _LLAMA_CLASSES
        model, fast = path / "tokenizer.model", path / "tokenizer.json"
        if model.exists() and (not fast.exists() or rules == "mindformers" or llama and rules == "transformers-5"):
            self._impl = _SentencePiece(model, self.config, rules)
        elif fast.exists():
            self._impl = _TokenizerJson(fast, self.config, rules, llama)
        else:
            raise TunebridgeError(f"{path}: not a tokenizer directory (no tokenizer.json or sentencepiece "
                                  f"tokenizer.model)")
        self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id = (
            self._impl.special_id(k) for k in _SPECIAL_KEYS)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._impl.encode(text, add_special_tokens)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """``encode(t, add_special_tokens=False)`` for each text, in one call."""
        return self._impl.encode_many(texts)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._impl.decode([int(i) for i in ids], skip_special_tokens)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._impl.token_id(token)

    def __len__(self) -> int:
        return self._impl.size()


def load_tokenizer(path: str | Path | None = None, rules: str = "transformers-4") -> Tokenizer:
    """A tokenizer directory (tokenizer.json, or a sentencepiece tokenizer.model), or the embedded one when None."""
    where = Path(path) if path else EMBEDDED_TOKENIZER
    if not where.is_dir():
        raise TunebridgeError(f"{where}: no such tokenizer directory")
    return Tokenizer(where, rules)


def pad_id(tokenizer) -> int:
    """The id batches are padded with: pad, else eos."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TunebridgeError("the tokenizer has neither a pad nor an eos token to pad batches with")
    return pad


def _read_config(path: Path) -> dict:
    config: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the second wins, as in transformers
        f = path / name
        if f.exists():
            try:
                config.update(json.loads(f.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise TunebridgeError(f"{f}: not a JSON file ({e})") from None
    return config


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


class _TokenizerJson:
    def __init__(self, path: Path, config: dict, rules: str, llama: bool):
        from tokenizers import AddedToken, Tokenizer as Fast
        try:
            self.tok = Fast.from_file(str(path))
        except Exception as e:  # the tokenizers library raises its own exception types
            raise TunebridgeError(f"{path}: not a tokenizers file ({e})") from None
        added = [t for t in config.get("added_tokens_decoder", {}).values()
                 if self.tok.token_to_id(t["content"]) is None]
        self.tok.add_special_tokens([AddedToken(t["content"], normalized=False) for t in added if t.get("special")])
        self.tok.add_tokens([AddedToken(t["content"], normalized=False) for t in added if not t.get("special")])
        if llama and rules == "transformers-5":
            from tokenizers import pre_tokenizers
            self.tok.normalizer = None
            self.tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=_scheme(config, rules),
                                                              split=False)
        self.config, self.llama = config, llama
        self.special = {t.content for t in self.tok.get_added_tokens_decoder().values() if t.special}

    def special_id(self, key: str) -> int | None:
        text = _token_text(self.config.get(key))
        return self.tok.token_to_id(text) if text else None

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self.llama and add_special_tokens:  # LlamaTokenizerFast rebuilds its post-processor from the config
            return _bos_eos(self, self.tok.encode(text, add_special_tokens=False).ids)
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], skip: bool) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip)

    def token_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    def size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)


def _bos_eos(impl, ids: list[int]) -> list[int]:
    """LlamaTokenizer's special tokens: bos unless add_bos_token is false, eos if add_eos_token."""
    bos, eos = impl.special_id("bos_token"), impl.special_id("eos_token")
    head = [bos] if impl.config.get("add_bos_token", True) and bos is not None else []
    tail = [eos] if impl.config.get("add_eos_token", False) and eos is not None else []
    return head + ids + tail


def _scheme(config: dict, rules: str) -> str:
    """Where a dummy prefix "▁" goes: legacy (every piece, unconditionally), always, first or never."""
    if config.get("add_prefix_space") is False:
        return "never"
    legacy = config.get("legacy")
    if rules == "transformers-5":
        return "always" if legacy is True else "first"
    return "first" if legacy is False else "legacy"


class _SentencePiece:
    def __init__(self, path: Path, config: dict, rules: str):
        try:
            import sentencepiece as spm
            from sentencepiece import sentencepiece_model_pb2 as model_pb2
        except ImportError as e:
            raise TunebridgeError(f"{path}: reading a sentencepiece model needs the sentencepiece and protobuf "
                                  f"packages ({e}); install tunebridge[torch]") from None
        raw = path.read_bytes()
        proto = model_pb2.ModelProto()
        try:
            proto.ParseFromString(raw)
        except Exception as e:  # protobuf's DecodeError
            raise TunebridgeError(f"{path}: not a sentencepiece model ({e})") from None
        norm = proto.normalizer_spec
        if rules != "mindformers" and (norm.name not in ("identity", "") or norm.remove_extra_whitespaces):
            raise TunebridgeError(
                f"{path}: the sentencepiece model normalizes text ({norm.name or 'custom'}"
                f"{', removes extra whitespace' if norm.remove_extra_whitespaces else ''}); transformers' fast "
                f"tokenizer, which MindSpeed-LLM uses, skips that normalization, so the stack's ids cannot be "
                f"reproduced from tokenizer.model: give the tokenizer.json the stack loads")
        self.config = {} if rules == "mindformers" else config
        self.scheme = "legacy" if rules == "mindformers" else _scheme(config, rules)
        self.sp = spm.SentencePieceProcessor(model_proto=raw)
        proto.normalizer_spec.add_dummy_prefix = False
        self.sp_bare = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        names = {k: _token_text(self.config.get(k)) for k in _SPECIAL_KEYS}
        defaults = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                    "pad_token": "<unk>" if rules == "mindformers" else None}  # MindFormers pads with <unk>
        self.names = {k: names[k] if k in self.config else defaults[k] for k in _SPECIAL_KEYS}
        pieces = [p.piece for p in proto.pieces if p.type == _SP_CONTROL or
                  (rules != "mindformers" and p.type == _SP_USER_DEFINED)]
        added = {t["content"]: int(i) for i, t in self.config.get("added_tokens_decoder", {}).items()}
        self.added = {**{p: self.sp.piece_to_id(p) for p in pieces},
                      **{n: self.sp.piece_to_id(n) for n in self.names.values() if n}, **added}
        self.special_ids = set(self.added.values())
        self.split = re.compile("(" + "|".join(map(re.escape, sorted(self.added, key=len, reverse=True))) + ")")

    def special_id(self, key: str) -> int | None:
        name = self.names.get(key)
        return self.added.get(name) if name else None

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = self._text(text)
        return _bos_eos(self, ids) if add_special_tokens else ids

    def _text(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        for part in self.split.split(text):
            if part in self.added:
                ids.append(self.added[part])
            elif part:
                ids += self._piece(part, at_start=start == 0)
            start += len(part)
        return ids

    def _piece(self, text: str, at_start: bool) -> list[int]:
        if self.scheme == "legacy":
            prefix = True
        elif self.scheme == "never" or text.startswith((" ", "▁")):
            prefix = False
        else:
            prefix = self.scheme == "always" or at_start
        return (self.sp if prefix else self.sp_bare).encode(text)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        return [self._text(t) for t in texts]

    def decode(self, ids: list[int], skip: bool) -> str:
        out, run = [], []
        for i in ids:
            if i in self.special_ids:
                out.append(self.sp.decode(run))
                run = []
                if not skip:
                    out.append(self.sp.id_to_piece(i))
            else:
                run.append(i)
        return "".join(out) + self.sp.decode(run)

    def token_id(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token]
        return self.sp.piece_to_id(token)

    def size(self) -> int:
        return max(self.sp.get_piece_size(), max(self.special_ids, default=-1) + 1)
