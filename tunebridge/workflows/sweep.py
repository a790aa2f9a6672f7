"""Grids over recipe fields for lab ablations: ``--set finetune.lora.rank=4,8,16 --set train.lr=1e-5,5e-5``.

Each point is the recipe with those fields replaced (validated like the file), run on a backend or rendered;
the results become one table and one plot.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from ..errors import TunebridgeError


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple


def parse_axis(text: str) -> Axis:
    """``dotted.field=v1,v2,...``; each value read as YAML (numbers stay numbers)."""
    field, sep, values = text.partition("=")
    if not sep or not field or not values:
        raise TunebridgeError(f"--set {text!r}: expected FIELD=V1,V2,... (e.g. finetune.lora.rank=4,8,16)")
    from ruamel.yaml import YAMLError

    yaml = YAML(typ="safe")
    try:
        return Axis(field.strip(), tuple(yaml.load(v) for v in values.split(",")))
    except YAMLError as e:
        raise TunebridgeError(
            f"--set {text!r}: a value is not valid YAML ({getattr(e, 'problem', None) or e})"
        ) from None


def with_values(recipe, assignment: dict[str, object]):
    """A copy of ``recipe`` with dotted fields replaced, re-validated (a bad value names the field)."""
    from ..recipe.schema import recipe_from_dict

    data = recipe.model_dump()
    for dotted, value in assignment.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            if not isinstance(node, dict) or key not in node or node[key] is None:
                raise TunebridgeError(f"--set {dotted}: the recipe has no {key!r} section")
            node = node[key]
        if last not in node:
            raise TunebridgeError(f"--set {dotted}: no field {last!r} (fields here: {', '.join(node)})")
        node[last] = value
    suffix = "".join(f"-{k.rsplit('.', 1)[-1]}{v}" for k, v in assignment.items())
    data["name"] = recipe.name + re.sub(r"[^A-Za-z0-9._+-]", "_", suffix)
    return recipe_from_dict(data, recipe.source, "--set " + ", ".join(f"{k}={v}" for k, v in assignment.items()))


def grid(axes: list[Axis]) -> list[dict[str, object]]:
    return [dict(zip((a.field for a in axes), combo)) for combo in itertools.product(*(a.values for a in axes))]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for row in rows:
        if row.get("losses"):
            ax.plot(range(1, len(row["losses"]) + 1), row["losses"], label=row["point"])
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("sweep: loss per step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
