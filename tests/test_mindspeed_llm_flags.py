"""Every flag of every rendered MindSpeed-LLM script, for each version, against that version's own parsers.

The records (tests/fixtures/mindspeed_llm_flags/VERSION.json, README.md there) were made by MindSpeed-LLM's
argument parsers and ``validate_args`` (with MindSpeed and Megatron-LM of that version) run on CPU by
scripts/mindspeed_llm/flag_records.py: which entry points exist, every option string each accepts (its
``dest``, ``nargs``, ``choices``), and which values validation reset when given the rendered scripts.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tunebridge.recipe.schema import load_recipe
from tunebridge.backends.render import render
from tunebridge.backends.mindspeed_llm.render import VERSIONS

RECORDS = Path(__file__).parent / "fixtures" / "mindspeed_llm_flags"
RECIPES = sorted(Path("recipes").glob("*.yaml"))
# What validation may change of a rendered value without changing its meaning.
NORMALIZED = {"tokenizer_name_or_path"}  # made absolute
RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + "\\n")
"""


def record(version: str) -> dict:
    return json.loads((RECORDS / f"{version}.json").read_text())


def parser(rec: dict, entry: str, flags: list[str] = ()) -> dict:
    """The entry point's options (convert_ckpt.py's depend on its --load-model-type)."""
    if entry == "convert_ckpt.py" and "mg" in flags[flags.index("--load-model-type") + 1:][:1]:
        entry = "convert_ckpt.py --load-model-type mg"
    options = rec["parsers"][entry]
    return rec["parsers"][options["same_as"]] if "same_as" in options else options


def commands(script: Path, tmp_path: Path) -> list[list[str]]:
    """What bash passes to ``torchrun`` / ``python`` / ``tunebridge`` when it runs ``script`` (stand-ins record it)."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for name in ("torchrun", "python", "tunebridge"):
            (bin_dir / name).write_text(RECORDER)
            (bin_dir / name).chmod(0o755)
    log = tmp_path / "argv.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_LOG": str(log), "TRAIN_ITERS": "10"}
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True, capture_output=True)
    return [json.loads(line) for line in log.read_text().splitlines()]


def check_flags(options: dict, flags: list[str], where: str) -> list[str]:
    """The dests the flags set; asserts each flag is accepted and given values as its option takes them."""
    dests, i = [], 0
    while i < len(flags):
        flag = flags[i]
        assert flag.startswith("--"), f"{where}: {flag!r} is not a flag (a value of the flag before it?)"
        assert flag in options, f"{where}: {flag} is not accepted"
        opt = options[flag]
        values = []
        while i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            values.append(flags[i + 1])
            i += 1
        nargs = opt["nargs"]
        if nargs == 0:
            assert not values, f"{where}: {flag} takes no value, given {values}"
        elif nargs in (None, 1):
            assert len(values) == 1, f"{where}: {flag} takes one value, given {values}"
        elif nargs == "+":
            assert values, f"{where}: {flag} takes values"
        if opt["choices"] is not None:
            allowed = {str(c) for c in opt["choices"]}
            assert all(v in allowed for v in values), f"{where}: {flag} {values} not in {sorted(allowed)}"
        dests.append(opt["dest"])
        i += 1
    return dests


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_rendered_flag_is_accepted_as_intended(tmp_path, version, path):
    rec = record(version)
    resets: dict[tuple[str, str], set[str]] = {}  # (entry point, script) -> what validation reset
    for entry, probes in rec["validation"].items():
        for probe in probes:
            assert "error" not in probe, f"{version} {entry} refused {probe['script']}: {probe['error']}"
            resets[entry, probe["script"]] = set(probe.get("reset", {}))
    written = render(load_recipe(path), "mindspeed-llm", tmp_path / "out", num_samples=1000, version=version)
    seen = 0
    for script in (w for w in written if w.suffix == ".sh"):
        for argv in commands(script, tmp_path):
            if argv[0] == "tunebridge":  # a family the version's converter has no model type for
                assert argv[1] in ("convert", "merge-lora"), f"{script.name}: tunebridge {argv[1]}"
                continue
            at = next(i for i, w in enumerate(argv) if w.endswith(".py"))
            entry = Path(argv[at]).name
            assert rec["entry_points"].get(entry), f"{script.name}: MindSpeed-LLM {version} has no {entry}"
            flags = argv[at + 1:]
            dests = check_flags(parser(rec, entry, flags), flags, f"{version} {script.name} ({entry})")
            changed = (set(dests) & resets[entry, script.name]) - NORMALIZED
            assert not changed, f"{version} {script.name}: validation resets {sorted(changed)}"
            seen += 1
    assert seen >= 4


@pytest.mark.parametrize("version", VERSIONS)
def test_prompt_types_are_the_versions_templates(version, tmp_path):
    """Every template tunebridge renders as --prompt-type is one of the version's (preprocess_data.py and
    posttrain_gpt.py); MindFormers' vicuna_v1.1 is not, and rendering it for MindSpeed-LLM is refused."""
    from tunebridge.data.templates import TEMPLATES
    from tunebridge.errors import TunebridgeError
    rec = record(version)
    choices = [set(parser(rec, entry)["--prompt-type"]["choices"]) for entry in ("preprocess_data.py",
                                                                                 "posttrain_gpt.py")]
    own = {name for name, t in TEMPLATES.items() if t.stack == "mindspeed-llm"}
    assert all(own <= c for c in choices) and not any((set(TEMPLATES) - own) & c for c in choices)
    recipe = tmp_path / "vicuna.yaml"
    text = Path("recipes/tiny-demo-lora.yaml").read_text().replace("../", f"{Path.cwd()}/")
    recipe.write_text(text.replace("template: qwen", "template: vicuna_v1.1"))
    with pytest.raises(TunebridgeError, match="MindSpeed-LLM has no --prompt-type vicuna_v1.1"):
        render(load_recipe(recipe), "mindspeed-llm", tmp_path / "out", version=version)


def test_each_version_names_the_tokenizer_rules_of_its_transformers():
    from tunebridge.data.tokenizer import TOKENIZER_RULES
    assert sorted(VERSIONS.values()) == sorted(TOKENIZER_RULES)
    assert VERSIONS == {"2.3.0": "transformers-4", "master": "transformers-5"}  # 4.57.1 and 5.2.0 pinned


def test_records_name_their_sources():
    for version in VERSIONS:
        rec = record(version)
        assert rec["version"] == version and all(len(c) == 40 for c in rec["commits"].values())
    assert not record("master")["entry_points"]["convert_ckpt.py"]
    assert record("2.3.0")["entry_points"]["convert_ckpt.py"]


@pytest.mark.parametrize("version", VERSIONS)
def test_variable_lengths_need_no_pad_to_seq_lengths(version):
    """Megatron core_v0.12.1's validate_args sets variable_seq_lengths to False whatever the flags said;
    MindSpeed-LLM's finetune feature turns it on after validation for --no-pad-to-seq-lengths (what the
    scripts pass), so only that flag keeps samples unpadded."""
    probes = {p["script"]: p for p in record(version)["validation"]["posttrain_gpt.py"]}
    variant = next(p for name, p in probes.items() if name.startswith("variant_variable-seq-lengths_"))
    rendered = probes[variant["script"].removeprefix("variant_variable-seq-lengths_")]
    assert variant["reset"]["variable_seq_lengths"] == [True, False]
    assert rendered["reset"]["variable_seq_lengths"] == [False, True]


@pytest.mark.parametrize("version", VERSIONS)
def test_megatron_takes_the_model_from_tunebridge_args(version):
    """What Megatron's load_args_from_checkpoint (as MindSpeed-LLM patches it) set from the args of tunebridge's
    Qwen2 tp 2 pp 2 checkpoint, run with only the parallel layout and tokenizer flags (--use-checkpoint-args).
    That checkpoint is the one whose bytes tests/test_mindspeed_llm_interop.py pins."""
    from tunebridge.model.spec import ModelSpec
    spec = ModelSpec.from_hf_config(Path(__file__).parent / "fixtures" / "mindspeed_llm" / "hf" / "qwen2")
    got = json.loads((RECORDS / f"checkpoint_args-{version}.json").read_text())
    assert got == {
        "num_layers": spec.num_layers, "hidden_size": spec.hidden_size, "ffn_hidden_size": spec.ffn_hidden_size,
        "num_attention_heads": spec.num_heads, "group_query_attention": True, "num_query_groups": spec.num_kv_heads,
        "kv_channels": spec.head_dim, "max_position_embeddings": spec.max_position_embeddings,
        "position_embedding_type": "rope", "use_rotary_position_embeddings": True, "rotary_base": spec.rope_theta,
        "add_bias_linear": False, "add_qkv_bias": True, "swiglu": True, "normalization": "RMSNorm",
        "untie_embeddings_and_output_weights": True, "padded_vocab_size": spec.vocab_size, "iteration": 1}
