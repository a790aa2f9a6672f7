#!/usr/bin/env bash
# Create the two virtual environments tunebridge needs. Idempotent: a stamp file records
# the inputs each environment was built from; a matching stamp skips the work.
#   .venv            tunebridge + PyTorch stack (torch CPU, transformers, peft, megatron-core, torchmetrics), ruff, mypy
#   .venv-mindspore  tunebridge core + mindspore + mindformers (their pins clash with the torch stack)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

stamp_of() { cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16; }
STAMP=$(stamp_of)

make_env() {  # name, extras
  local venv=$1 extras=$2
  if [[ -f $venv/.tunebridge-stamp && $(cat "$venv/.tunebridge-stamp") == "$STAMP" ]]; then
    echo "setup: $venv is up to date"; return
  fi
  echo "setup: building $venv (extras: $extras); pip's output goes to $venv/setup.log"
  [[ -x $venv/bin/python ]] || "$PY" -m venv "$venv"
  if ! { "$venv/bin/python" -m pip install --upgrade pip &&
         "$venv/bin/python" -m pip install -e "$ROOT[$extras]"; } > "$venv/setup.log" 2>&1; then
    tail -n 40 "$venv/setup.log" >&2
    echo "setup: building $venv failed (full log: $venv/setup.log)" >&2
    exit 1
  fi
  echo "$STAMP" > "$venv/.tunebridge-stamp"
}

# Debian's headless Chromium: the report test opens the HTML report in it.
browser() {
  [[ -x /usr/bin/chromium ]] && { echo "setup: chromium is installed"; return; }
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "setup: no /usr/bin/chromium (apt-get install chromium as root); the report's browser test will skip"
    return
  fi
  echo "setup: installing Debian's chromium (log: .chromium-setup.log)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      > .chromium-setup.log 2>&1; then
    tail -n 20 .chromium-setup.log >&2; echo "setup: installing chromium failed" >&2; exit 1
  fi
}

case "${1:-all}" in
  torch) make_env .venv torch,test,lint ;;
  mindspore) make_env .venv-mindspore mindspore ;;
  browser) browser ;;
  all) make_env .venv torch,test,lint; make_env .venv-mindspore mindspore; browser ;;
  *) echo "usage: scripts/setup.sh [all|torch|mindspore|browser]" >&2; exit 2 ;;
esac
