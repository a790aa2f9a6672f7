"""Tables on the console: the terminal's width on a terminal, 160 columns when piped or redirected (rich would
assume 80); cells that do not fit wrap (fold) instead of being cut with an ellipsis, so names and counts stay whole."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import JustifyMethod

PIPED_WIDTH = 160


def console(file=None):
    from rich.console import Console

    out = file or sys.stdout
    if out.isatty():
        return Console(file=out)
    return Console(file=out, width=PIPED_WIDTH, no_color=True, highlight=False)


def table(title: str, columns: dict[str, JustifyMethod] | list[str], **options):
    """A rich table whose cells wrap (fold) instead of being cut with an ellipsis; ``columns``: name ->
    justification, or names (left-justified)."""
    from rich.table import Table

    t = Table(title=title, **options)
    spec: dict[str, JustifyMethod] = columns if isinstance(columns, dict) else dict.fromkeys(columns, "left")
    for name, justify in spec.items():
        t.add_column(name, justify=justify, overflow="fold")
    return t
