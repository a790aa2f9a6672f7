#!/usr/bin/env bash
# Lint and type-check the package: ruff (rules and formatting) and mypy, configured in pyproject.toml and pinned in
# its `lint` extra (scripts/setup.sh installs it into .venv, so mypy sees the installed torch/numpy/pydantic types).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh torch
.venv/bin/ruff check tunebridge
.venv/bin/ruff format --check tunebridge
.venv/bin/mypy
