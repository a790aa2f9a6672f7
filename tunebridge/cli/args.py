"""The command line's argument parser and value types: every bad flag is one ``tunebridge: error:`` line, exit 2."""

from __future__ import annotations

import argparse
import json
import math
import sys


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one format the command line uses for every error."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        sys.stderr.write(
            f"tunebridge: error: {self.prog.removeprefix('tunebridge').strip() or 'tunebridge'}: {message}\n"
        )
        sys.exit(2)


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _within(kind, text: str, ok, what: str):
    value = _number(kind, text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _within(int, text, lambda v: v > 0, "a positive integer")


def nonnegative_int(text: str) -> int:
    return _within(int, text, lambda v: v >= 0, "0 or more")


def nonnegative_float(text: str) -> float:
    return _within(float, text, lambda v: v >= 0, "0 or more")


def unit_fraction(text: str) -> float:
    """A fraction in (0, 1], e.g. a ratio of parameters (not a percentage)."""
    return _within(float, text, lambda v: 0 < v <= 1, "a fraction in (0, 1] (not a percentage)")


def percent(text: str) -> float:
    return _within(float, text, lambda v: 0 <= v <= 100, "a percentage in [0, 100]")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise argparse.ArgumentTypeError(f"expected a JSON object of names to strings, got {text!r}")
    return value
