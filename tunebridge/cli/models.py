"""``tunebridge models``: the model catalogue."""
from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from ..models import CATALOGUE


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model catalogue with exact parameter counts")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.json:
        print(json.dumps({name: {**s.to_dict(), "total_params": s.total_params()} for name, s in CATALOGUE.items()},
                         indent=2))
        return 0
    t = Table(title="tunebridge model catalogue")
    for col in ("name", "family", "layers", "hidden", "heads/kv", "ffn", "vocab", "bias", "tied", "params"):
        t.add_column(col, justify="right" if col in ("layers", "hidden", "ffn", "vocab", "params") else "left")
    for s in CATALOGUE.values():
        bias = "qkvo" if s.o_bias else ("qkv" if s.qkv_bias else "-")
        t.add_row(s.name, s.family, str(s.num_layers), str(s.hidden_size), f"{s.num_heads}/{s.num_kv_heads}",
                  str(s.ffn_hidden_size), str(s.vocab_size), bias, "yes" if s.tied_embeddings else "no",
                  f"{s.total_params():,}")
    Console().print(t)
    return 0
