#!/usr/bin/env python3
"""Mutation testing of tunebridge's core with mutmut 3: which small bugs do the tests catch?

    .venv/bin/python scripts/mutation.py run [GROUP ...]     # all groups by default; hours on 2 cores
    .venv/bin/python scripts/mutation.py rerun [GROUP ...]   # changed code and the survivors, after new tests
    .venv/bin/python scripts/mutation.py report              # the table and every survivor (markdown)
    .venv/bin/python scripts/mutation.py audit               # the issue's hand-made bugs, each caught (minutes)

GROUPS below is the one place that names the modules under test and, for each, the fast tests that cover
them: each group runs in its own copy of the repository (``out/mutation/<group>``), where mutmut mutates the
group's modules and runs, for every mutant, the group's tests that reach the mutated function (mutmut's own
per-function map). ``benchmarks/mutation/equivalent.tsv`` lists the surviving mutants that cannot be killed
because the code behaves the same, each with its reason; ``report`` counts them apart and flags a listed
mutant whose code has changed since.

Code that runs only inside ``.venv-mindspore`` (``tunebridge/backends/mindformers/ms``) is not mutated: that
environment imports the unmutated package (the bridge runs it without the mutated copy on its path, and mutmut's
trampolines need mutmut, which it does not have). Its results reach the tests as the reference the mutated
torch-side code is compared with, which is what those tests are for.
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "out" / "mutation"
EQUIVALENT = REPO / "benchmarks" / "mutation" / "equivalent.tsv"
MUTMUT = "mutmut==3.8.1"
COPIED = ("tunebridge", "tests", "recipes", "data", "scripts", "pyproject.toml")


def _venvs() -> dict[str, Path]:
    """The two environments: beside the repository, or (a git worktree without its own) the one this script runs
    in and the one $TUNEBRIDGE_MINDSPORE_PYTHON names."""
    torch_env = REPO / ".venv" if (REPO / ".venv").exists() else Path(sys.prefix)
    ms_python = os.environ.get("TUNEBRIDGE_MINDSPORE_PYTHON")
    ms_env = REPO / ".venv-mindspore" if (REPO / ".venv-mindspore").exists() or not ms_python \
        else Path(ms_python).parent.parent
    return {".venv": torch_env, ".venv-mindspore": ms_env}


VENVS = _venvs()
PYTHON = VENVS[".venv"] / "bin" / "python"


@dataclass(frozen=True)
class Group:
    name: str
    modules: tuple[str, ...]   # globs under the repository root
    tests: tuple[str, ...]     # pytest arguments: files, or files and a -k expression
    # only these mutants (globs of mutmut's names, e.g. one class's methods); a cross-check group measures
    # mutants another group counts, with other tests: its rows are shown, not added to the total
    mutants: tuple[str, ...] = ()
    cross_check: bool = False

    def chosen(self, sample: str) -> list[str]:
        """mutmut's name patterns for this group's mutants within the sample (empty: every mutant)."""
        tail = f"__mutmut_*[{sample}]" if sample else "__mutmut_*"
        if self.mutants:
            return [f"{m}{tail}" for m in self.mutants]
        return [f"*{tail}"] if sample else []

    def selects(self, name: str) -> bool:
        return not self.mutants or any(fnmatch.fnmatch(name, f"{m}__mutmut_*") for m in self.mutants)


# Conversion tests that also run MindSpore (a process each, ~10 s; the logits across the frameworks 45-70 s a
# model) check the .ckpt against MindFormers' own loader; the torch-side tests of the same conversions stay, so
# these leave the per-mutant cost, not coverage.
NOT_MINDSPORE = "not mindspore and not across_the and not verify_cli"
# Tests that spawn Megatron ranks (gloo, seconds each): a mutant that hangs one leaves its ranks behind, and
# their cost per mutant would make a group take hours; the in-process tests of the same code stay.
NOT_MEGATRON_RANKS = "not fused_lora_in_megatron"
GROUPS = (
    Group("layout", ("tunebridge/model/layout.py", "tunebridge/model/partition.py", "tunebridge/model/dialects/*"),
          ("tests/test_convert.py", "tests/test_convert_irregular.py", "tests/test_adapters.py",
           "tests/test_accounting_peft.py", "tests/test_mindspeed_llm_interop.py", "tests/test_moe.py",
           "tests/test_convert_paths.py", "-k",
           f"{NOT_MINDSPORE} and {NOT_MEGATRON_RANKS} and not through_megatron_core and not fails_verification")),
    Group("accounting", ("tunebridge/model/accounting.py",),
          # not test_accounting_megatron.py: Megatron's ranks count the same tensors (see NOT_MEGATRON_RANKS)
          ("tests/test_accounting_peft.py", "tests/test_params_cli.py", "tests/test_parity.py",
           "tests/test_explain.py", "tests/test_moe.py", "tests/test_convert_paths.py", "tests/test_moe_render.py",
           "-k", "not megatron_core and not fails_verification")),
    Group("convert", ("tunebridge/converters/checkpoint.py", "tunebridge/converters/formats/*"),
          # test_moe.py: expert-parallel conversions, without its logits through megatron-core (a model a test)
          ("tests/test_convert.py", "tests/test_convert_irregular.py", "tests/test_mcore_format.py",
           "tests/test_mindspeed_llm_interop.py", "tests/test_file_ranges.py", "tests/test_moe.py",
           "tests/test_convert_paths.py", "-k",
           f"{NOT_MINDSPORE} and not fails_verification and not through_megatron_core")),
    Group("adapters", ("tunebridge/converters/adapters.py", "tunebridge/converters/merge.py"),
          # test_moe.py: experts' LoRA pairs (PEFT's ParamWrapper layout <-> mcore), without megatron-core runs
          ("tests/test_adapters.py", "tests/test_mindspeed_llm_interop.py", "tests/test_moe.py", "-k",
           f"{NOT_MEGATRON_RANKS} and not megatron_core and not fails_verification")),
    Group("data", ("tunebridge/data/templates.py", "tunebridge/data/encode.py", "tunebridge/data/writers.py"),
          # test_data_mindrecord_writer.py: MindRecordWriter against a stand-in for MindSpore (its real round
          # trip, test_data_mindrecord_stream.py, starts MindSpore: seconds a mutant)
          ("tests/test_data_formats.py", "tests/test_data_multiturn.py", "tests/test_data_pipeline.py",
           "tests/test_data_goldens.py", "tests/test_data_mindrecord_writer.py", "-k",
           # the seeds' end-to-end runs (every stack's files, minutes each) and the MindSpore read-backs
           "not seed00 and not workers_give and not mindspore and not squad_eval_set and not to_mindrecord")),
    # MindRecordWriter with the real MindSpore (each test starts it: seconds a mutant), sampled: the data group
    # counts these mutants, tested against a stand-in for MindSpore (test_data_mindrecord_writer.py)
    Group("mindrecord", ("tunebridge/data/writers.py",), ("tests/test_data_mindrecord_stream.py",),
          mutants=("tunebridge.data.writers.xǁMindRecordWriterǁ*", "tunebridge.data.writers.x_write_mindrecord"),
          cross_check=True),
    Group("metrics", ("tunebridge/evaluation/squad.py", "tunebridge/evaluation/math.py",
                      "tunebridge/evaluation/mindformers_emf1.py", "tunebridge/evaluation/multiple_choice.py"),
          ("tests/test_eval_metrics.py", "tests/test_eval_multiple_choice.py", "tests/test_eval_mindspeed_llm.py")),
    Group("parity", ("tunebridge/parity/verdicts.py",), ("tests/test_parity.py",)),
    Group("logs", ("tunebridge/parity/logs/*",), ("tests/test_logs.py",)),
    Group("train", ("tunebridge/train/schedule.py", "tunebridge/train/optim.py", "tunebridge/train/order.py"),
          ("tests/test_train_optim.py", "tests/test_torch_backend.py")),
    # a mixture of experts' load-balancing loss, Megatron's formula on the torch side
    Group("moe_aux", ("tunebridge/train/moe_aux.py",), ("tests/test_moe_aux.py",)),
)



@dataclass(frozen=True)
class HandMutant:
    """A realistic bug written by hand (the audit that started issue 17): ``new`` in place of ``old`` in
    ``path`` must make ``tests`` fail."""
    bug: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


HAND_MUTANTS = (
    HandMutant("vocabulary padded with zeros, not copies of the last row", "tunebridge/model/layout.py",
               "pieces.append(t[-1:].expand(n - max(real, 0), *tail).contiguous())",
               "pieces.append(torch.zeros(n - max(real, 0), *tail, dtype=t.dtype))",
               ("tests/test_convert_irregular.py", "-k", "vocabulary_padding")),
    HandMutant("padded vocabulary size ignores tp", "tunebridge/model/partition.py",
               "multiple = divisible_by * tp", "multiple = divisible_by",
               ("tests/test_convert_irregular.py", "-k", "vocabulary_padding")),
    HandMutant("convert --dtype fp16 writes bfloat16", "tunebridge/converters/checkpoint.py",
               "(torch.float32, torch.bfloat16, torch.float16)", "(torch.float32, torch.bfloat16, torch.bfloat16)",
               ("tests/test_convert_irregular.py", "-k", "fp16")),
    HandMutant("records read whole (mcore -> mcore, -> hf --dtype) skip the CRC-32", "tunebridge/converters/formats/torchzip.py",
               "                at += len(chunk)\n        self._check(key, info, crc)",
               "                at += len(chunk)",
               ("tests/test_convert_irregular.py", "-k", "corrupt_record")),
    HandMutant("SQuAD F1 from token sets, not counts", "tunebridge/evaluation/squad.py",
               "common = sum((Counter(pred) & Counter(ref)).values())", "common = len(set(pred) & set(ref))",
               ("tests/test_eval_metrics.py", "-k", "repeated_tokens")),
    HandMutant("EmF1 no longer cuts the prediction at its first line", "tunebridge/evaluation/mindformers_emf1.py",
               'return prediction.strip().split("\\n")[0]', "return prediction.strip()",
               ("tests/test_eval_metrics.py", "-k", "first_line")),
    HandMutant('mean-loss verdict "rel < x or abs < y" became "and"', "tunebridge/parity/verdicts.py",
               "mean_rel < tol.mean_rel or mean_abs < tol.mean_abs", "mean_rel < tol.mean_rel and mean_abs < tol.mean_abs",
               ("tests/test_parity.py", "-k", "rel_or_abs")),
    HandMutant("Megatron log values: no nan, sign or exponent", "tunebridge/parity/logs/megatron.py",
               r"([-+]?(?:\d[\d.]*(?:[eE][-+]?\d+)?|nan|inf)", r"(\d[\d.]*",
               ("tests/test_logs.py", "-k", "nan_negative")),
    HandMutant("Megatron and JSONL keep samples of exactly seq_length", "tunebridge/data/prepare.py",
               "keep_long or len(sample.input_ids) < e.seq_length", "keep_long or len(sample.input_ids) <= e.seq_length",
               ("tests/test_data_formats.py", "-k", "exactly_seq_length")),
    HandMutant("weight-decay groups inverted", "tunebridge/train/optim.py",
               "(no_decay if p.ndim < 2 or name.endswith(\".bias\") else decay)",
               "(decay if p.ndim < 2 or name.endswith(\".bias\") else no_decay)",
               ("tests/test_torch_backend.py", "-k", "decays_matrices")),
    HandMutant("a rank's KV groups packed [q q][k k][v v], not group by group", "tunebridge/model/layout.py",
               "for g in range(r * groups, (r + 1) * groups) for j, n in enumerate(per_group)]",
               "for j, n in enumerate(per_group) for g in range(r * groups, (r + 1) * groups)]",
               ("tests/test_convert_irregular.py", "-k", "kv_groups")),
    HandMutant("micro-batch losses not divided by the number of micro-batches", "tunebridge/backends/pytorch.py",
               "loss = loss_sum / max(count, 1) / len(micro)", "loss = loss_sum / max(count, 1)",
               ("tests/test_torch_backend.py", "-k", "hand_computed")),
)


def audit() -> int:
    """Apply each hand-made bug to a copy of the package, run its tests there: each must fail."""
    where = WORK / "audit"
    failures = 0
    for m in HAND_MUTANTS:
        if where.exists():
            shutil.rmtree(where)
        _copy_repo(where)
        target = where / m.path
        text = target.read_text(encoding="utf-8")
        if text.count(m.old) != 1:
            print(f"STALE   {m.bug}: {m.path} no longer holds the line to change; update HAND_MUTANTS")
            failures += 1
            continue
        target.write_text(text.replace(m.old, m.new), encoding="utf-8")
        proc = subprocess.run([str(PYTHON), "-m", "pytest", "-q", "-x", "-p",
                               "no:cacheprovider", *m.tests], cwd=where, env=dict(_env(where), PYTHONPATH=str(where)),
                              capture_output=True, text=True)
        caught = proc.returncode == 1
        failures += not caught
        print(f"{'caught ' if caught else 'MISSED '} {m.bug} ({' '.join(m.tests)}: exit {proc.returncode})")
    shutil.rmtree(where, ignore_errors=True)
    return failures


STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "caught by type check",
          -11: "segfault", -9: "segfault", None: "not checked"}
KILLED = {"killed", "timeout", "segfault"}  # a mutant that crashes or hangs the tests is caught


def _setup_cfg(group: Group) -> str:
    def lines(values) -> str:
        return "".join(f"\n    {v}" for v in values)
    return ("[mutmut]\nsource_paths=tunebridge\n"
            f"only_mutate={lines(group.modules)}\n"
            f"pytest_add_cli_args_test_selection={lines(group.tests)}\n"
            f"pytest_add_cli_args={lines(['-p', 'no:cacheprovider'])}\n"
            # mutmut's wall-clock limit is (the tests' time + constant) x multiplier; on a shared machine a
            # healthy mutant's tests can take several times their measured time, and a timeout counts as caught
            "timeout_multiplier=30\ntimeout_constant=5\n"
            f"also_copy={lines(['recipes', 'data', 'scripts'])}\n")


def _copy_repo(where: Path) -> None:
    """The package, tests and what they read, and the environments beside them (as links)."""
    where.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, where / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, where / name)
    for venv, target in VENVS.items():
        (where / venv).symlink_to(target)


def _prepare(group: Group, fresh: bool) -> Path:
    where = WORK / group.name
    if fresh and where.exists():
        shutil.rmtree(where)
    if not where.exists():
        _copy_repo(where)
    else:  # a rerun: the code as it is now (mutmut mutates a changed function anew and keeps the rest), the tests
        shutil.copytree(REPO / "tunebridge", where / "tunebridge", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.rmtree(where / "tests")
        shutil.copytree(REPO / "tests", where / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    (where / "setup.cfg").write_text(_setup_cfg(group), encoding="utf-8")
    # tests find the environments beside the package (conftest, the bridge): the mutated copy's neighbours
    (where / "mutants").mkdir(exist_ok=True)
    for venv, target in VENVS.items():
        link = where / "mutants" / venv
        if not link.exists():
            link.symlink_to(target)
    return where


def _env(where: Path) -> dict[str, str]:
    env = dict(os.environ, TUNEBRIDGE_MINDSPORE_PYTHON=str(VENVS[".venv-mindspore"] / "bin" / "python"),
               # processes the tests start in .venv (CLI calls, gloo ranks) import the mutated copy too
               PYTHONPATH=str(where / "mutants"), OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _mutmut(where: Path, *args: str, log: Path | None = None) -> int:
    cmd = ["nice", "-n", "10", str(VENVS[".venv"] / "bin" / "mutmut"), *args]
    with open(log, "a") if log else open(os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, cwd=where, env=_env(where), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return proc.wait()
        finally:  # what a killed mutant's tests started (worker processes) goes with the run
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _ensure_mutmut() -> None:
    try:
        from importlib.metadata import version
        if version("mutmut") == MUTMUT.split("==")[1]:
            return
    except Exception:
        pass
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", MUTMUT], check=True)


def _selected(names: list[str]) -> list[Group]:
    known = {g.name: g for g in GROUPS}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"mutation.py: unknown group(s) {', '.join(unknown)} (groups: {', '.join(known)})")
    return [known[n] for n in names] if names else list(GROUPS)


def run(groups: list[Group], children: int, rerun: bool, sample: str = "", mutants: tuple[str, ...] = ()) -> None:
    _ensure_mutmut()
    # a systematic sample: the mutants whose number ends in one of these digits, in every function alike
    for group in groups:
        where = _prepare(group, fresh=not rerun)
        if rerun and (where / "sample").exists():  # the sample the group was run with
            sample = (where / "sample").read_text().strip()
        (where / "sample").write_text(f"{sample}\n")
        chosen = group.chosen(sample)
        started = time.time()
        if mutants:  # named mutants (globs) only, e.g. one outside the sample, or the listed equivalents
            chosen = list(mutants)
        elif rerun and chosen:  # the sample's untested mutants and every survivor, nothing already caught again
            chosen = [name for name, status, _ in _results(where) if group.selects(name) and status not in KILLED
                      and (status != "not checked" or any(fnmatch.fnmatch(name, c) for c in chosen))] or chosen
        code = _mutmut(where, "run", "--max-children", str(children), *chosen, log=where / "mutmut.log")
        if rerun and not mutants and group.chosen(sample):
            # new tests make mutmut forget what it found for the functions they reach: test the sample's
            # mutants it no longer has a result for
            patterns = group.chosen(sample)
            again = [name for name, status, _ in _results(where) if status == "not checked" and group.selects(name)
                     and any(fnmatch.fnmatch(name, c) for c in patterns)]
            if again:
                code = _mutmut(where, "run", "--max-children", str(children), *again, log=where / "mutmut.log")
        names = [name for name, status, _ in _results(where) if status not in KILLED | {"not checked"}
                 and group.selects(name)] if rerun and not sample and not mutants else []
        if names:  # the survivors again, against the tests as they are now
            code = _mutmut(where, "run", "--max-children", str(children), *names, log=where / "mutmut.log")
        elapsed = time.time() - started
        (where / "elapsed_s").write_text(f"{elapsed + (_elapsed(where) if rerun else 0):.0f}\n")
        print(f"{group.name}: mutmut exited {code} after {elapsed / 60:.1f} min (log: {where / 'mutmut.log'})")


def _elapsed(where: Path) -> float:
    try:
        return float((where / "elapsed_s").read_text())
    except (FileNotFoundError, ValueError):
        return 0.0


def _results(where: Path) -> list[tuple[str, str, Path]]:
    """(mutant name, status, source file) of every mutant of a group's run."""
    out = []
    for meta in sorted((where / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        source = meta.relative_to(where / "mutants").with_suffix("")
        for name, code in data["exit_code_by_key"].items():
            out.append((name, STATUS.get(code, "suspicious"), source))
    return out


# --- where a mutant is, and what it changed ---------------------------------------------------------

_FUNC = re.compile(r"\.(x_(?P<func>\w+?)|xǁ(?P<cls>\w+)ǁ(?P<meth>\w+?))__mutmut_\d+$")


def _function_span(source: Path, name: str) -> tuple[int, int]:
    """First (decorator or ``def``) and last line of the function a mutant belongs to."""
    m = _FUNC.search(name)
    cls, func = (m["cls"], m["meth"]) if m["cls"] else (None, m["func"])
    tree = ast.parse(source.read_text(encoding="utf-8"))
    scope = tree.body
    if cls:
        scope = next(n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    node = next(n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == func)
    return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
diffs = {}
for name in sys.stdin.read().split():
    try:
        diffs[name] = get_diff_for_mutant(name)
    except Exception as e:  # a file mutmut is still writing
        diffs[name] = f"? {e}"
print(json.dumps(diffs))
"""


def _diffs(where: Path, names: list[str]) -> dict[str, str]:
    """mutmut's diff of each mutant (one process for all of them)."""
    if not names:
        return {}
    out = subprocess.run([str(PYTHON), "-c", _DIFFS], cwd=where, env=_env(where),
                         input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def locate(where: Path, name: str, source: Path, diff: str) -> tuple[int, str, str]:
    """(line in the source file, original line(s), mutated line(s)) of a mutant, from its diff."""
    removed = [l[1:] for l in diff.splitlines() if l.startswith("-") and not l.startswith("---")]
    added = [l[1:] for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    hunk = re.search(r"^@@ -(\d+)", diff, re.M)
    if not hunk or not removed:
        return 0, "?", "?"
    first, last = _function_span(where / source, name)
    body = diff[hunk.end():].splitlines()[1:]
    # the diff counts from the function's leading comments: take the matching line nearest to where it says
    guess = first + int(hunk.group(1)) - 1 + next(i for i, l in enumerate(body) if l.startswith("-"))
    lines = (where / source).read_text(encoding="utf-8").splitlines()
    matches = [i + 1 for i in range(first - 1, last) if lines[i].strip() == removed[0].strip()]
    line = min(matches, key=lambda i: abs(i - guess)) if matches else guess
    return line, " ".join(" ".join(removed).split()), " ".join(" ".join(added).split())


def _equivalents() -> dict[str, tuple[str, str, str]]:
    """mutant name -> (original line, mutated line, why it is equivalent)."""
    out = {}
    for row in EQUIVALENT.read_text(encoding="utf-8").splitlines()[1:] if EQUIVALENT.exists() else []:
        if row.strip():
            name, _where, before, after, why = row.split("\t")
            out[name] = (before, after, why)
    return out


def report(groups: list[Group], survivors_out: Path | None) -> None:
    equivalents = _equivalents()
    rows, checks, survivors, stale = [], [], [], []
    totals = dict(total=0, killed=0, equivalent=0, survived=0, pending=0)
    for group in groups:
        where = WORK / group.name
        if not (where / "mutants").exists():
            print(f"{group.name}: not run")
            continue
        per_module: dict[Path, dict[str, int]] = {}
        results = [r for r in _results(where) if group.selects(r[0])]
        diffs = _diffs(where, [name for name, status, _ in results if status not in KILLED])
        for name, status, source in results:
            counts = per_module.setdefault(source, dict(total=0, killed=0, equivalent=0, survived=0, pending=0))
            counts["total"] += 1
            if status in KILLED:
                counts["killed"] += 1
                continue
            if status == "not checked":
                counts["pending"] += 1
                continue
            line, before, after = locate(where, name, source, diffs[name])
            if name in equivalents:
                if equivalents[name][:2] == (before, after):
                    counts["equivalent"] += 1
                    continue
                stale.append(name)
            counts["survived"] += 1
            survivors.append((name, f"{source}:{line}", before, after, status))
        for source, counts in sorted(per_module.items()):
            if group.cross_check:  # mutants another group counts: shown, not added
                checks.append((f"{group.name} (cross-check)", str(source), counts))
                continue
            rows.append((group.name, str(source), counts))
            for k in totals:
                totals[k] += counts[k]
    print("| group | module | mutants | tested | killed | equivalent | survived | score |")
    print("|---|---|---|---|---|---|---|---|")
    for group, module, c in rows + [("all", "", totals)] + checks:
        print(f"| {group} | {module} | {c['total']} | {c['total'] - c['pending']} | {c['killed']} | "
              f"{c['equivalent']} | {c['survived']} | {_score(c)} |")
    samples = {g.name: (WORK / g.name / "sample").read_text().strip() for g in groups
               if (WORK / g.name / "sample").exists() and (WORK / g.name / "sample").read_text().strip()}
    if samples:
        print("\nsampled (only the mutants whose number ends in these digits): " +
              ", ".join(f"{k} [{v}]" for k, v in samples.items()))
    if totals["pending"]:
        print(f"\n{totals['pending']} mutant(s) not tested (outside a sample, or a run in progress or stopped)")
    times = {g.name: _elapsed(WORK / g.name) for g in groups}
    print(f"\nrun time: {sum(times.values()) / 3600:.1f} h (" +
          ", ".join(f"{k} {v / 60:.0f} min" for k, v in times.items()) + ")")
    if stale:
        print(f"\n{len(stale)} listed equivalent mutant(s) changed since they were listed: {', '.join(stale)}")
    if survivors_out:
        with open(survivors_out, "w", encoding="utf-8") as f:
            f.write("name\twhere\toriginal\tmutated\tstatus\n")
            for row in survivors:
                f.write("\t".join(row) + "\n")
        print(f"\n{len(survivors)} survivor(s) written to {survivors_out}")


def _score(c: dict[str, int]) -> str:
    live = c["total"] - c["equivalent"] - c["pending"]
    return f"{100 * c['killed'] / live:.1f} %" if live else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for command in ("run", "rerun"):
        s = sub.add_parser(command)
        s.add_argument("groups", nargs="*")
        s.add_argument("--max-children", type=int, default=1, help="mutants tested at once (default 1)")
        s.add_argument("--sample", default="", metavar="DIGITS",
                       help="only the mutants whose number ends in one of DIGITS (05: one in five)")
        s.add_argument("--mutants", nargs="+", default=(), metavar="NAME",
                       help="only these mutants (mutmut names or globs), e.g. the equivalents listed for a group")
    sub.add_parser("audit")
    s = sub.add_parser("report")
    s.add_argument("groups", nargs="*")
    s.add_argument("--survivors", type=Path, help="write the surviving mutants here (TSV)")
    args = p.parse_args()
    if args.command == "audit":
        sys.exit(1 if audit() else 0)
    groups = _selected(args.groups)
    if args.command == "report":
        report(groups, args.survivors)
    else:
        run(groups, args.max_children, rerun=args.command == "rerun", sample=args.sample,
            mutants=tuple(args.mutants))


if __name__ == "__main__":
    main()
