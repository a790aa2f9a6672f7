"""The Backend interface and its three implementations (each stack's record names its class)."""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TunebridgeError
from .result import RunResult
from .stacks import Stack, get_stack


@dataclass
class Plan:
    backend: str
    recipe: object  # tunebridge.recipe.schema.Recipe
    weights: Path  # HF model directory: every backend's weights are converted from it
    out: Path  # this backend's run directory
    steps: int | None = None
    executor: str = ""  # what runs, in words
    home: Path | None = None  # a real checkout of the stack, when given
    launch: bool = False  # True: launch the rendered artifacts in ``home`` (NPU present)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{self.backend}: {self.executor}" + "".join(f"\n  - {n}" for n in self.notes)


class Backend(ABC):
    name: str
    checkout_marker: str  # a file that identifies a real checkout of the stack
    executor: str  # the reference executor that runs here, in words

    @property
    def stack(self) -> Stack:
        return get_stack(self.name)

    def plan(self, recipe, weights: Path, out: Path, home: Path | None = None) -> Plan:
        """Everything ``run`` needs, checked now; raises TunebridgeError before any work."""
        if problem := self.stack.problem(recipe.spec):
            raise TunebridgeError(problem)
        if recipe.data is None or recipe.data.train is None:
            raise TunebridgeError(f"{recipe.source}: no data.train section: nothing to train on")
        if not (Path(weights) / "config.json").is_file():
            raise TunebridgeError(
                f"{weights}: not an HF model directory (no config.json); set model.weights or pass --weights"
            )
        plan = Plan(self.name, recipe, Path(weights), Path(out), recipe.train.max_steps, self.executor)
        if home is not None:
            home = Path(home)
            if not (home / self.checkout_marker).exists():
                raise TunebridgeError(f"{home}: not a {self.name} checkout (no {self.checkout_marker})")
            plan.home = home
            if self.hardware_present():
                plan.launch = True
                plan.executor = f"the rendered artifacts, launched in {home}"
            else:
                plan.notes.append(
                    f"{home} is a {self.name} checkout, but there is no Ascend NPU here: "
                    f"running the CPU reference executor instead of its scripts"
                )
        if not plan.launch:
            self.check_layout(recipe)
        return plan

    def check_layout(self, recipe) -> None:  # noqa: B027 - optional hook, most backends accept every layout
        """Refuse a parallel layout this backend's executor cannot run here (not checked when launching)."""

    def hardware_present(self) -> bool:
        """An Ascend host: the driver's ``npu-smi info`` answers (tests put a stand-in on PATH)."""
        if shutil.which("npu-smi") is None:
            return False
        try:
            return subprocess.run(["npu-smi", "info"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def render(self, recipe, out: Path, force: bool = False, num_samples: int | None = None) -> list[Path]:
        from .render import render

        return render(recipe, self.name, out, force=force, num_samples=num_samples)

    @abstractmethod
    def run(self, plan: Plan, inputs, progress: bool = True) -> RunResult:
        """Train ``plan`` from the shared ``inputs`` (:class:`tunebridge.backends.inputs.RunInputs`)."""


class TorchBackend(Backend):
    name = "torch"
    checkout_marker = ""
    executor = "transformers + PEFT on this machine (torch_npu if it imports, else CUDA, else CPU)"

    def plan(self, recipe, weights, out, home=None):
        if home is not None:
            raise TunebridgeError("the torch backend runs directly: it takes no checkout")
        return super().plan(recipe, weights, out)

    def render(self, recipe, out, force=False, num_samples=None):
        raise TunebridgeError("the torch backend runs directly (tunebridge run --backend torch): nothing to render")

    def run(self, plan, inputs, progress=True):
        from .pytorch import train

        cfg = inputs.config(plan.recipe, self.name)
        return train(
            plan.weights,
            inputs.data(self.stack.data),
            plan.out,
            cfg,
            init_adapter=str(inputs.adapter(self.stack.adapter)) if inputs.has_adapter else None,
            progress=progress,
        )


class MindFormersBackend(Backend):
    name = "mindformers"
    checkout_marker = "run_mindformer.py"
    executor = (
        "MindFormers' Trainer (config -> context -> Trainer.train, as run_mindformer.py) on the YAML "
        "`tunebridge render --device cpu` writes, MindSpore CPU (.venv-mindspore)"
    )

    def plan(self, recipe, weights, out, home=None):
        plan = super().plan(recipe, weights, out, home)
        p = recipe.parallel
        if p.tp * p.pp * p.dp > 1 and not plan.launch:
            raise TunebridgeError(
                f"{recipe.source}: parallel tp {p.tp} x pp {p.pp} x dp {p.dp}: MindFormers on "
                f"MindSpore CPU runs one card; launch it on Ascend (an NPU and --mindformers-home) "
                f"or render the recipe for a cluster"
            )
        if plan.home is not None and not plan.launch:
            plan.notes[-1] = (
                f"{plan.home} is a MindFormers checkout and there is no Ascend NPU here: its "
                f"run_mindformer.py runs the CPU profile"
            )
        return plan

    def run(self, plan, inputs, progress=True):
        from .mindformers.run import recipe_as_run, train_mindformers

        recipe = recipe_as_run(plan.recipe, inputs.overrides.get("max_steps"))
        return train_mindformers(recipe, inputs, plan.out, home=plan.home, launch=plan.launch, progress=progress)


class MindSpeedLLMBackend(Backend):
    name = "mindspeed-llm"
    checkout_marker = "posttrain_gpt.py"
    executor = (
        "megatron-core GPTModel (local spec) with MindSpeed-LLM's fused LoRA on CPU processes (gloo), "
        "from the converted mcore checkpoint and the Megatron indexed data"
    )

    def check_layout(self, recipe):
        p = recipe.parallel
        spec = recipe.spec
        if spec.num_kv_heads % p.tp:
            raise TunebridgeError(
                f"{recipe.source}: parallel.tp {p.tp} does not divide {spec.name}'s {spec.num_kv_heads} KV groups"
            )
        if p.dp != 1:
            raise TunebridgeError(f"{recipe.source}: parallel.dp {p.dp}: the CPU reference executor runs dp 1")
        if spec.num_experts and p.tp > 1:
            raise TunebridgeError(
                f"{recipe.source}: parallel.tp {p.tp}: megatron-core 0.16.1 trains a mixture of experts over tp > 1 "
                f"only with sequence parallelism (its MoELayer refuses otherwise), which the CPU reference executor "
                f"does not run; train {spec.name} with tp 1 here"
            )

    def run(self, plan, inputs, progress=True):
        from .mindspeed_llm.run import train_mindspeed_llm

        p = plan.recipe.parallel
        return train_mindspeed_llm(
            plan.recipe.spec,
            inputs.weights(self.stack.weights),
            inputs.data(self.stack.data),
            inputs.batches,
            inputs.config(plan.recipe, self.name),
            plan.out,
            tp=p.tp,
            pp=p.pp,
            num_layer_list=p.num_layer_list,
            init_adapter=inputs.adapter(self.stack.adapter) if inputs.has_adapter else None,
            progress=progress,
        )


def get_backend(name: str) -> Backend:
    stack = get_stack(name)
    return stack.load(stack.backend)()
