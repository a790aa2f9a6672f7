"""Shared test fixtures. Tests run in .venv; MindSpore work goes through tunebridge.bridge."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def ms_python() -> Path:
    """The MindSpore environment's interpreter. CI must have it; locally its absence skips."""
    from tunebridge.bridge import mindspore_python
    from tunebridge.errors import TunebridgeError
    try:
        return mindspore_python()
    except TunebridgeError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
