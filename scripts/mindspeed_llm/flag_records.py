"""Record which flags a MindSpeed-LLM version accepts, from its own argument parsers (run on CPU).

    python scripts/mindspeed_llm/flag_records.py MINDSPEED_LLM_CHECKOUT --mindspeed MINDSPEED_CHECKOUT \\
        --megatron MEGATRON_LM_CHECKOUT --version NAME --commits MSLLM_SHA,MINDSPEED_SHA,MEGATRON_SHA \\
        [--probe SCRIPT.sh ...] --out RECORD.json
    python scripts/mindspeed_llm/flag_records.py ... --checkpoint-args MCORE_DIR --out ARGS.json

(``scripts/mindspeed_llm/make_flag_records.sh`` runs both for one version.) For each entry point tunebridge renders it writes, into one JSON record: which entry-point scripts exist,
every option string its parser accepts with the option's ``dest``, ``default`` and ``nargs``/``const``, and,
for each ``--probe`` script (rendered commands), what the parser plus ``validate_args`` made of its flags:
values it reset (``--variable-seq-lengths`` on 2.3.0, for one) and flags it refused.

Entry points: ``posttrain_gpt.py`` / ``inference.py`` / ``evaluation.py`` parse with Megatron's
``parse_args`` as MindSpeed-LLM's adaptor patches it (imported for real, as the scripts import it) and
validate with its patched ``validate_args`` and the defaults the script passes; ``preprocess_data.py``,
``convert_ckpt.py`` (loader/saver plugins added as it adds them) and ``convert_ckpt_v2.py`` with their own
parsers. Only modules that need an Ascend NPU (``torch_npu``, ``acl``, ...) are replaced, by inert stubs
(:class:`_Stub`); the parsers and validation run as shipped. Nothing is written into the checkouts.
``--checkpoint-args`` records what Megatron's ``load_args_from_checkpoint`` (as patched) takes from a checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ENTRY_POINTS = ("posttrain_gpt.py", "inference.py", "evaluation.py", "preprocess_data.py", "convert_ckpt.py",
                "convert_ckpt_v2.py")
MEGATRON_ENTRIES = {"posttrain_gpt.py": {}, "inference.py": {"no_load_rng": True, "no_load_optim": True},
                    "evaluation.py": {"no_load_rng": True, "no_load_optim": True}}
# Flags naming what a run reads, which exist on a host before the command runs (made empty for validation).
INPUT_FLAGS = ("--tokenizer-name-or-path", "--tokenizer-model", "--load", "--load-dir", "--lora-load", "--input",
               "--task-data-path", "--hf-cfg-dir")
STUBBED = ("torch_npu", "acl", "tbe", "te", "apex", "transformer_engine", "bitsandbytes", "triton", "mindspore",
           "ray", "torchair")


class _StubMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stub_class(f"{cls.__name__}.{name}")

    def __call__(cls, *args, **kwargs):
        return super().__call__()

    def __iter__(cls):
        return iter(())

    def __bool__(cls):
        return False


class _Stub(metaclass=_StubMeta):
    """Anything an NPU module would provide: attributes, calls and subclasses give more stubs; false, empty."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stub_class(name)()

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __bool__(self):
        return False

    def __iter__(self):
        return iter(())


def _stub_class(name: str) -> type:
    return _StubMeta(name.rpartition(".")[2] or name, (_Stub,), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stub_class(f"{self.__name__}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == s or fullname.startswith(s + ".") for s in STUBBED):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        module.__file__ = f"/nonexistent/{spec.name.replace('.', '/')}/__init__.py"
        return module

    def exec_module(self, module):
        pass


def _prepare(checkout: Path, mindspeed: Path, megatron: Path) -> None:
    sys.meta_path.insert(0, _StubFinder())
    for p in (megatron, mindspeed, checkout):
        sys.path.insert(0, str(p))
    import torch
    torch.npu = _StubModule("torch.npu")  # what torch_npu would register
    torch.cuda.is_available = lambda: True  # initialize_megatron's check; nothing here touches a device
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "1")


def _options(parser: argparse.ArgumentParser) -> dict[str, dict]:
    out = {}
    for action in parser._actions:
        for option in action.option_strings:
            out[option] = {"dest": action.dest, "default": _jsonable(action.default),
                           "nargs": action.nargs if isinstance(action.nargs, (int, str, type(None))) else str(action.nargs),
                           "takes_value": action.nargs != 0, "const": _jsonable(action.const),
                           "choices": [_jsonable(c) for c in action.choices] if action.choices else None}
    return out


def _jsonable(v):
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


@contextlib.contextmanager
def _argv(argv: list[str]):
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


class _Built(Exception):
    def __init__(self, parser):
        self.parser = parser


def _capture_parser(run) -> argparse.ArgumentParser:
    """The parser ``run()`` builds: parse_args / parse_known_args raise with it instead of parsing."""
    real_parse, real_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def stop(self, *args, **kwargs):
        raise _Built(self)
    argparse.ArgumentParser.parse_args = stop
    argparse.ArgumentParser.parse_known_args = stop
    try:
        run()
    except _Built as built:
        return built.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real_parse, real_known
    raise RuntimeError("the entry point parsed no arguments")


def megatron_parser(entry: str) -> argparse.ArgumentParser:
    from megatron.training import initialize
    return _capture_parser(lambda: initialize.parse_args(None, False))


def megatron_validate(entry: str, argv: list[str]) -> tuple[dict, dict]:
    """(parsed, validated) namespaces of ``argv`` as the entry point's ``initialize_megatron`` makes them:
    Megatron's ``parse_args`` and ``validate_args`` (as patched) with the defaults the script passes."""
    from megatron.training import initialize
    with _argv([entry, *argv]):
        args = initialize.parse_args(None, False)
    parsed = dict(vars(args))
    with contextlib.redirect_stdout(io.StringIO()):
        initialize.validate_args(args, dict(MEGATRON_ENTRIES[entry]))
    return parsed, vars(args)


def script_parser(checkout: Path, entry: str, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of a script that parses its own flags (preprocess_data.py, convert_ckpt*.py)."""
    module = _load_script(checkout, entry)  # defines functions; `if __name__ == "__main__"` does not run
    build = {"preprocess_data.py": lambda: module.get_args(), "convert_ckpt_v2.py": lambda: module.get_args(),
             "convert_ckpt.py": lambda: module.main()}[entry]
    if entry != "convert_ckpt.py":
        return _capture_parser(build)
    # convert_ckpt.py parses known args first, then adds its loader and saver plugins' flags and parses again
    real_known = argparse.ArgumentParser.parse_known_args
    parsers = []

    def known_then_capture(self, *args, **kwargs):
        if parsers:
            raise _Built(self)
        parsers.append(self)
        return real_known(self, *args, **kwargs)
    real_parse = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_known_args = known_then_capture
    argparse.ArgumentParser.parse_args = lambda self, *a, **k: (_ for _ in ()).throw(_Built(self))
    try:
        with _argv([entry, *argv]):
            module.main()
    except _Built as built:
        return built.parser
    finally:
        argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args = real_known, real_parse
    raise RuntimeError("convert_ckpt.py parsed no arguments")


def rendered_commands(script: Path, scratch: Path) -> list[tuple[str, int, list[str]]]:
    """(entry point, world size, flags) of each command a rendered script runs, exactly as bash expands them: the script
    runs in ``scratch`` (which keeps what it made, e.g. ``logs/``) with stand-ins for ``torchrun``, ``python``
    and ``tunebridge`` that record their arguments; the inputs the commands name are made there (empty)."""
    (scratch / "bin").mkdir(parents=True)
    for name in ("torchrun", "python", "tunebridge"):
        stand_in = scratch / "bin" / name
        stand_in.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c 'import json, sys; "
                            f"open(sys.argv[1], \"a\").write(json.dumps(sys.argv[2:]) + \"\\n\")' "
                            f"\"$CAPTURE\" {name} \"$@\"\n")
        stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{scratch / 'bin'}:{os.environ['PATH']}", "CAPTURE": str(scratch / "argv")}
    subprocess.run(["bash", str(script.resolve())], cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)
    lines = (scratch / "argv").read_text().splitlines() if (scratch / "argv").exists() else []
    commands = []
    for argv in map(json.loads, lines):
        at = next((i for i, w in enumerate(argv) if w.endswith(".py")), None)
        launcher = dict(zip(argv[1:at], argv[2:at])) if at is not None else {}
        world = int(launcher.get("--nproc_per_node", 1)) * int(launcher.get("--nnodes", 1))
        commands.append((Path(argv[at]).name, world, argv[at + 1:]) if at is not None else (argv[0], 1, argv[1:]))
        for flag, value in zip(argv, argv[1:]):
            if flag in INPUT_FLAGS:
                (scratch / value).mkdir(parents=True, exist_ok=True)
    return commands


def _run_self(mode: list[str], opts):
    """This script in a fresh interpreter: one per entry point, as MindSpeed-LLM's patches are per process."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(opts.checkout), "--mindspeed",
                           str(opts.mindspeed), "--megatron", str(opts.megatron), *mode], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(mode[:2])}: failed\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# convert_ckpt.py adds its loader's and saver's flags by --load-model-type: one parser per direction
CONVERT_V1_DIRECTIONS = {"convert_ckpt.py": ("hf", "mg"), "convert_ckpt.py --load-model-type mg": ("mg", "hf")}


def _one_parser(checkout: Path, entry: str) -> dict:
    if entry in MEGATRON_ENTRIES:
        return _options(megatron_parser(entry))
    if entry in CONVERT_V1_DIRECTIONS:
        load, save = CONVERT_V1_DIRECTIONS[entry]
        argv = ["--load-model-type", load, "--save-model-type", save, "--model-type", "GPT", "--load-dir", "x",
                "--save-dir", "y"]
        return _options(script_parser(checkout, "convert_ckpt.py", argv))
    return _options(script_parser(checkout, entry, []))


def _validate_in(checkout: Path, entry: str, cwd: Path, world: int, flags: list[str]) -> dict:
    """:func:`_validate` run in ``cwd`` (where the script ran) as rank 0 of ``world`` processes (torchrun's
    environment), paths under ``cwd`` shown relative to it."""
    os.chdir(cwd)
    os.environ.update(WORLD_SIZE=str(world), RANK="0", LOCAL_RANK="0")
    return json.loads(json.dumps(_validate(checkout, entry, flags)).replace(f"{cwd}/", "./"))


def _validate(checkout: Path, entry: str, flags: list[str]) -> dict:
    """What the entry point's parser and validation make of ``flags``: the values validation changed, or the
    error that stopped it."""
    out: dict = {}
    try:
        if entry in MEGATRON_ENTRIES:
            parsed, validated = megatron_validate(entry, flags)
        elif entry == "preprocess_data.py":
            module = _load_script(checkout, entry)
            with _argv([entry, *flags]):
                args = module.get_args()
            parsed = dict(vars(args))
            module.validate_args(args)
            validated = vars(args)
        else:
            parser = (script_parser(checkout, entry, flags) if entry == "convert_ckpt.py" else
                      _capture_parser(_load_script(checkout, entry).get_args))
            parser.parse_args(flags)
            return out
    except SystemExit as e:
        out["error"] = f"exit {e.code}"
        return out
    except Exception as e:  # noqa: BLE001 - recorded: what validation refused
        out["error"] = f"{type(e).__name__}: {e}"
        return out
    out["reset"] = {k: [_jsonable(v), _jsonable(validated.get(k))] for k, v in parsed.items()
                    if k in validated and _jsonable(validated.get(k)) != _jsonable(v)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--mindspeed", type=Path, required=True)
    ap.add_argument("--megatron", type=Path, required=True)
    ap.add_argument("--version")
    ap.add_argument("--commits", help="MindSpeed-LLM,MindSpeed,Megatron-LM commits")
    ap.add_argument("--probe", type=Path, nargs="*", default=[], help="rendered scripts whose commands to validate")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parser-of", help=argparse.SUPPRESS)  # internal: one entry point's options, as JSON
    ap.add_argument("--checkpoint-args", type=Path, help="an mcore checkpoint: record what Megatron's "
                    "load_args_from_checkpoint takes from it (flags to parse with: DIR.flags.json beside it)")
    ap.add_argument("--validate", help=argparse.SUPPRESS)  # internal: JSON [[cwd, world, flags], ...] of one entry point
    opts, rest = ap.parse_known_args()
    opts.checkout, opts.mindspeed, opts.megatron = (p.resolve() for p in (opts.checkout, opts.mindspeed, opts.megatron))
    if opts.parser_of or opts.validate or opts.checkpoint_args:
        _prepare(opts.checkout, opts.mindspeed, opts.megatron)
        with _argv(["posttrain_gpt.py"]), contextlib.redirect_stdout(sys.stderr):
            import mindspeed_llm  # noqa: F401 - applies MindSpeed's and MindSpeed-LLM's patches, as the scripts do
            if opts.checkpoint_args:
                result = checkpoint_args(opts.checkpoint_args.resolve())
            elif opts.parser_of:
                result = _one_parser(opts.checkout, opts.parser_of)
            else:
                result = [_validate_in(opts.checkout, opts.validate, Path(cwd), world, flags)
                          for cwd, world, flags in json.loads(Path(rest[0]).read_text())]
        if opts.out and opts.checkpoint_args:
            opts.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(json.dumps(result))
        return
    if not (opts.version and opts.commits and opts.out):
        ap.error("--version, --commits and --out are required")
    entries = {e: (opts.checkout / e).is_file() for e in ENTRY_POINTS}
    record: dict = {"version": opts.version,
                    "commits": dict(zip(("mindspeed_llm", "mindspeed", "megatron"), opts.commits.split(","))),
                    "entry_points": entries,
                    "parsers": {}, "validation": {}}
    parsers = [e for e, present in entries.items() if present]
    parsers += [e for e in CONVERT_V1_DIRECTIONS if entries["convert_ckpt.py"] and e not in parsers]
    for entry in parsers:
        options = _run_self(["--parser-of", entry], opts)
        same = next((e for e, o in record["parsers"].items() if o == options), None)
        record["parsers"][entry] = {"same_as": same} if same else options
    with tempfile.TemporaryDirectory() as scratch:
        runs: dict[str, list] = {}
        for n, script in enumerate(opts.probe):
            for entry, world, flags in rendered_commands(script, Path(scratch) / str(n)):
                if entry in record["parsers"]:
                    runs.setdefault(entry, []).append((script.name, str(Path(scratch) / str(n)), world, flags))
        for entry, items in runs.items():
            todo = Path(scratch) / f"{entry}.json"
            todo.write_text(json.dumps([item[1:] for item in items]))
            results = _run_self(["--validate", entry, str(todo)], opts)
            record["validation"][entry] = [{"script": item[0], **result} for item, result in zip(items, results)]
    opts.out.write_text(dump_record(record))
    print(f"wrote {opts.out}")


def checkpoint_args(checkpoint: Path) -> dict:
    """What Megatron's ``load_args_from_checkpoint`` (as MindSpeed-LLM patches it; ``--use-checkpoint-args``) takes
    from ``checkpoint``'s saved args: {dest: value} of every argument it changed."""
    from megatron.training import checkpointing, initialize
    from megatron.training.global_vars import set_args
    saved = json.loads((checkpoint.parent / f"{checkpoint.name}.flags.json").read_text())
    with _argv(["posttrain_gpt.py", "--load", str(checkpoint), "--use-checkpoint-args", *saved]):
        args = initialize.parse_args(None, False)
    before = {k: _jsonable(v) for k, v in vars(args).items()}
    set_args(args)
    with contextlib.redirect_stdout(io.StringIO()):
        checkpointing.load_args_from_checkpoint(args)
    return {k: _jsonable(v) for k, v in sorted(vars(args).items()) if before.get(k) != _jsonable(v)}


def dump_record(record: dict) -> str:
    """JSON with one line per option and per probe: compact, and a changed flag is a one-line diff."""
    def one(v) -> str:
        return json.dumps(v, sort_keys=True, ensure_ascii=False)

    def block(items: dict, inner) -> str:
        return "{\n" + ",\n".join(f"  {one(k)}: {inner(v)}" for k, v in sorted(items.items())) + "\n }"

    parsers = block(record["parsers"], lambda opts: "{\n" + ",\n".join(
        f"   {one(o)}: {one(v)}" for o, v in sorted(opts.items())) + "\n  }")
    validation = block(record["validation"], lambda probes: "[\n" + ",\n".join(f"   {one(p)}" for p in probes) + "\n  ]")
    rest = {k: v for k, v in record.items() if k not in ("parsers", "validation")}
    return ("{\n" + "".join(f" {one(k)}: {one(v)},\n" for k, v in sorted(rest.items())) +
            f' "parsers": {parsers},\n "validation": {validation}\n}}\n')


def _load_script(checkout: Path, entry: str) -> types.ModuleType:
    module = types.ModuleType("__entry__")
    module.__file__ = str(checkout / entry)
    exec(compile((checkout / entry).read_text(), module.__file__, "exec"), module.__dict__)
    return module


if __name__ == "__main__":
    main()
