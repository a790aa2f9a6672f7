#!/usr/bin/env bash
# Run the test suite: sets up both environments first (idempotent), lints the package (scripts/lint.sh), then pytest
# in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
exec .venv/bin/python -m pytest -q "$@"
