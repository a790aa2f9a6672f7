#!/usr/bin/env bash
# Lint and type-check the package: ruff's rules and mypy, both configured in pyproject.toml and pinned in its
# `lint` extra, run from .venv so mypy sees the installed torch/numpy/pydantic types.
# `ruff format --check` is not run yet: the first `ruff format` rewrites most files, so it waits until the open
# branches have merged (one reformatting commit, then the check joins this script).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh torch
if ! { [[ -x .venv/bin/ruff ]] && [[ -x .venv/bin/mypy ]]; }; then
  echo "lint: installing the lint extra into .venv (log: .venv/lint-setup.log)"
  .venv/bin/python -m pip install -e ".[lint]" > .venv/lint-setup.log 2>&1 || { tail -n 20 .venv/lint-setup.log >&2; exit 1; }
fi
.venv/bin/ruff check tunebridge
.venv/bin/mypy
