"""The command line starts at once and explains itself: the commands that only read recipes import no framework,
and every subcommand and option has help text. (Start-up time itself is measured by benchmarks/startup.py.)"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunebridge.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "megatron", "mindspore", "peft", "safetensors", "tokenizers")
PROBE = """
import json, sys
from tunebridge.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (HEAVY,)


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["models"],
    ["validate", "recipes/tiny-demo-lora.yaml", "recipes/llama3-8b-math-lora-r8.yaml"],
    ["params", "recipes/llama3-8b-math-lora-r8.yaml"],
    ["explain", "recipes/tiny-demo-lora.yaml"],
    ["render", "recipes/qwen2.5-7b-alpaca-zh-lora.yaml", "--out", "{tmp}/render"],
    ["run", "recipes/tiny-demo-lora.yaml", "--out", "{tmp}/exists"],  # refused before any framework is loaded
], ids=lambda argv: " ".join(argv[:2]))
def test_light_commands_import_no_framework(argv, tmp_path):
    (tmp_path / "exists").mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == (2 if argv[0] == "run" else 0), proc.stderr[-2000:]
    assert result["heavy"] == []


def _parsers(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: no help text"
                yield from _parsers(sub, f"{path} {name}")


def test_every_subcommand_and_option_has_help_text():
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}"
               for path, parser in _parsers(build_parser(), "tunebridge") for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert missing == []
