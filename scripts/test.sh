#!/usr/bin/env bash
# Run the test suite: sets up both environments first (idempotent), then pytest in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
