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
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from ..errors import TunebridgeError, unknown

EMBEDDED_TOKENIZER = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
EMBEDDED_VOCAB = 512  # the embedded tokenizer's ids: the tiny models' vocabulary
# a recipe's data.tokenizer_rules; each MindSpeed-LLM version's are named in render.mindspeed_llm.VERSIONS
TokenizerRules = Literal["transformers-4", "transformers-5"]
TOKENIZER_RULES: tuple[TokenizerRules, ...] = get_args(TokenizerRules)
RULES = (*TOKENIZER_RULES, "mindformers")
_LLAMA_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
ROW_PAD = ("pad_token", "unk_token", "eos_token")  # MindRecord rows are padded with the first the tokenizer has
_SP_CONTROL, _SP_USER_DEFINED = 3, 4


class Tokenizer:
    """Encode / decode with a stack's rules; the small part of transformers' tokenizer API tunebridge uses.

    The special tokens (names and, for a ``tokenizer.json``, ids) come from the directory's JSON files alone; the
    tokenizer itself is built on first use (:func:`load_tokenizer` builds it at once), so reading a recipe's
    special ids (``tunebridge render``) loads no tokenizer library."""

    def __init__(self, path: str | Path, rules: str = "transformers-4"):
        path = Path(path)
        if rules not in RULES:
            raise TunebridgeError(unknown("tokenizer rules", rules, RULES))
        if not path.is_dir():
            raise TunebridgeError(f"{path}: no such tokenizer directory")
        self.path, self.rules = path, rules
        self.config = _read_config(path)
        self._llama = self.config.get("tokenizer_class") in _LLAMA_CLASSES
        model, fast = path / "tokenizer.model", path / "tokenizer.json"
        sentencepiece = rules == "mindformers" or self._llama and rules == "transformers-5"
        if model.exists() and (sentencepiece or not fast.exists()):
            self._file = model
        elif fast.exists():
            self._file = fast
        else:
            raise TunebridgeError(
                f"{path}: not a tokenizer directory (no tokenizer.json or sentencepiece tokenizer.model)"
            )
        self.names = _special_names(self.config, rules, sentencepiece=self._file == model)
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = (self.names[k] for k in _SPECIAL_KEYS)

    @cached_property
    def _impl(self):
        if self._file.name == "tokenizer.model":
            return _SentencePiece(self._file, self.config, self.rules, self.names)
        return _TokenizerJson(self._file, self.config, self.rules, self._llama, self.names)

    @cached_property
    def _listed(self) -> dict[str, int]:
        """The ids a tokenizer.json lists, read as JSON: its added tokens, over its model's vocabulary."""
        if self._file.name != "tokenizer.json":
            return {}
        try:
            data = json.loads(self._file.read_text(encoding="utf-8"))
            vocab = data["model"].get("vocab") or {}
            ids = {p[0]: i for i, p in enumerate(vocab)} if isinstance(vocab, list) else dict(vocab)  # Unigram: a list
            ids.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            raise TunebridgeError(f"{self._file}: not a tokenizers file ({type(e).__name__}: {e})") from None
        return ids

    def _special_id(self, key: str) -> int | None:
        name = self.names[key]
        return None if name is None else self.convert_tokens_to_ids(name)

    bos_token_id = cached_property(lambda self: self._special_id("bos_token"))
    eos_token_id = cached_property(lambda self: self._special_id("eos_token"))
    unk_token_id = cached_property(lambda self: self._special_id("unk_token"))
    pad_token_id = cached_property(lambda self: self._special_id("pad_token"))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._impl.encode(text, add_special_tokens)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """``encode(t, add_special_tokens=False)`` for each text, in one call."""
        return self._impl.encode_many(texts)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self._impl.decode([int(i) for i in ids], skip_special_tokens)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        if "_impl" not in self.__dict__ and token in self._listed:
            return self._listed[token]
        return self._impl.token_id(token)

    def __len__(self) -> int:
        return self._impl.size()


def load_tokenizer(path: str | Path | None = None, rules: str = "transformers-4") -> Tokenizer:
    """A tokenizer directory (tokenizer.json, or a sentencepiece tokenizer.model), or the embedded one when None;
    built, so that a file it cannot use is refused here."""
    tokenizer = Tokenizer(path or EMBEDDED_TOKENIZER, rules)
    tokenizer._impl  # noqa: B018  (built now)
    return tokenizer


def pad_id(tokenizer) -> int:
    """The id batches are padded with: pad, else eos."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise TunebridgeError("the tokenizer has neither a pad nor an eos token to pad batches with")
    return pad


def row_pad_token(tokenizer) -> str:
    """The special token MindRecord rows are padded with, as its key: the tokenizer's pad, else <unk> (MindFormers'
    LlamaTokenizer has no pad and pads with it), else eos."""
    for key in ROW_PAD:
        if getattr(tokenizer, f"{key}_id") is not None:
            return key
    raise TunebridgeError("the tokenizer has no pad, unk or eos token to pad MindRecord rows with")


def row_pad_id(tokenizer) -> int:
    return getattr(tokenizer, f"{row_pad_token(tokenizer)}_id")


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


def _special_names(config: dict, rules: str, sentencepiece: bool) -> dict[str, str | None]:
    """bos/eos/unk/pad token texts: as the config names them; a sentencepiece LlamaTokenizer has defaults for those
    it does not name, and MindFormers' reads no config (and pads with <unk>)."""
    if not sentencepiece:
        return {k: _token_text(config.get(k)) for k in _SPECIAL_KEYS}
    config = {} if rules == "mindformers" else config
    defaults = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>" if rules == "mindformers" else None,
    }
    return {k: _token_text(config[k]) if k in config else defaults[k] for k in _SPECIAL_KEYS}


class _TokenizerJson:
    def __init__(self, path: Path, config: dict, rules: str, llama: bool, names: dict[str, str | None]):
        from tokenizers import AddedToken, Tokenizer as Fast

        try:
            self.tok = Fast.from_file(str(path))
        except Exception as e:  # the tokenizers library raises its own exception types
            raise TunebridgeError(f"{path}: not a tokenizers file ({e})") from None
        added = [
            t for t in config.get("added_tokens_decoder", {}).values() if self.tok.token_to_id(t["content"]) is None
        ]
        self.tok.add_special_tokens([AddedToken(t["content"], normalized=False) for t in added if t.get("special")])
        self.tok.add_tokens([AddedToken(t["content"], normalized=False) for t in added if not t.get("special")])
        if llama and rules == "transformers-5":
            from tokenizers import pre_tokenizers

            self.tok.normalizer = None
            self.tok.pre_tokenizer = pre_tokenizers.Metaspace(
                replacement="▁", prepend_scheme=_scheme(config, rules), split=False
            )
        self.config, self.llama, self.names = config, llama, names

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
    bos, eos = (impl.token_id(impl.names[k]) if impl.names[k] else None for k in ("bos_token", "eos_token"))
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
    def __init__(self, path: Path, config: dict, rules: str, names: dict[str, str | None]):
        try:
            import sentencepiece as spm
            from sentencepiece import sentencepiece_model_pb2 as model_pb2
        except ImportError as e:
            raise TunebridgeError(
                f"{path}: reading a sentencepiece model needs the sentencepiece and protobuf "
                f"packages ({e}); install tunebridge[torch]"
            ) from None
        raw = path.read_bytes()
        proto = model_pb2.ModelProto()  # type: ignore[attr-defined]  # protobuf-generated: no stubs for its messages
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
                f"reproduced from tokenizer.model: give the tokenizer.json the stack loads"
            )
        self.config = {} if rules == "mindformers" else config
        self.scheme = "legacy" if rules == "mindformers" else _scheme(config, rules)
        self.sp = spm.SentencePieceProcessor(model_proto=raw)
        proto.normalizer_spec.add_dummy_prefix = False
        self.sp_bare = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self.names = names
        pieces = [
            p.piece
            for p in proto.pieces
            if p.type == _SP_CONTROL or (rules != "mindformers" and p.type == _SP_USER_DEFINED)
        ]
        added = {t["content"]: int(i) for i, t in self.config.get("added_tokens_decoder", {}).items()}
        self.added = {
            **{p: self.sp.piece_to_id(p) for p in pieces},
            **{n: self.sp.piece_to_id(n) for n in self.names.values() if n},
            **added,
        }
        self.special_ids = set(self.added.values())
        self.split = re.compile("(" + "|".join(map(re.escape, sorted(self.added, key=len, reverse=True))) + ")")

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
        out: list[str] = []
        run: list[int] = []
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
