"""Small helpers for writing bash scripts that quote every user value."""

from __future__ import annotations

import shlex


def q(value: object) -> str:
    """Shell-quote a value for bash (paths with spaces, quotes and $ stay literal)."""
    return shlex.quote(str(value))


def assign(name: str, value: object) -> str:
    """NAME=value unless NAME is already set in the environment (value taken literally)."""
    return f"{name}=${{{name}:-{q(value)}}}"


def args_block(name: str, args: list[str]) -> str:
    """A bash array assignment, one argument per line: NAME=(\\n  --flag value\\n)."""
    lines = "\n".join(f"    {a}" for a in args)
    return f"{name}=(\n{lines}\n)"


def fmt_number(v: float | int) -> str:
    """Numbers as the stacks' own scripts write them (1e-05 -> 1e-5, 0.05 stays)."""
    if isinstance(v, bool):
        raise TypeError("booleans are flags, not numbers")
    if isinstance(v, int):
        return str(v)
    s = repr(float(v))
    if "e" in s:
        mant, exp = s.split("e")
        return f"{mant.rstrip('0').rstrip('.') if '.' in mant else mant}e{int(exp)}"
    return s[:-2] if s.endswith(".0") else s
