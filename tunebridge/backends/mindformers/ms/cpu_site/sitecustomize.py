"""MindFormers 1.9.0 / MindSpore 2.9.0 on CPU: the two ops of its training and generation paths with no CPU kernel.

The rendered ``--device cpu`` run scripts put this directory on ``PYTHONPATH``; Python imports ``sitecustomize``
at start-up, which registers a hook that adapts each module below right after the program itself imports it.
Nothing is imported here, nothing changes on other device targets, and each adapter is one method:

- ``mindspore.nn.wrap.loss_scale``: ``TrainOneStepWithLossScaleCell.get_overflow_status`` (which MindFormers'
  ``MFTrainOneStepCell`` calls every step) takes the Ascend branch on any device but GPU and calls
  ``NPUGetFloatStatusV2``, an Ascend-only op. On CPU it becomes: overflow = not every gradient is finite,
  the same answer (the status register reports inf/nan produced while computing those gradients).
- ``mindformers.generation.text_generator``: ``GenerationMixin`` decodes greedily with ``mint.argmax``
  (kernel ``ArgMaxExt``, not registered on CPU). On CPU it uses ``ops.argmax``: the same index, first
  maximum on ties.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys


def _cpu() -> bool:
    from mindspore import context

    return context.get_context("device_target") == "CPU"


def _overflow_by_isfinite(module) -> None:
    from mindspore import ops

    cell = module.TrainOneStepWithLossScaleCell
    original_init, original_status = cell.__init__, cell.get_overflow_status

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.tunebridge_on_cpu = _cpu()

    def get_overflow_status(self, status, compute_output):
        if not self.tunebridge_on_cpu:
            return original_status(self, status, compute_output)
        finite = ops.stack([ops.isfinite(g).all() for g in compute_output]).all()
        return ops.logical_not(finite)

    cell.__init__, cell.get_overflow_status = __init__, get_overflow_status


def _argmax_with_cpu_kernel(module) -> None:
    from mindspore import ops

    mixin = module.GenerationMixin
    original_init = mixin.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if _cpu():
            self.argmax = ops.argmax

    mixin.__init__ = __init__


ADAPTERS = {
    "mindspore.nn.wrap.loss_scale": _overflow_by_isfinite,
    "mindformers.generation.text_generator": _argmax_with_cpu_kernel,
}


class _AdaptAfterImport(importlib.abc.MetaPathFinder):
    """Finds the modules of ADAPTERS as the normal path finder does and adapts them once executed."""

    def find_spec(self, name, path, target=None):
        if name not in ADAPTERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            ADAPTERS[name](module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # wraps this one loader instance
        return spec


sys.meta_path.insert(0, _AdaptAfterImport())
