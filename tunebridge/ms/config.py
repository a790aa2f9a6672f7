"""Rendered MindFormers YAML read back by MindFormers itself (runs in .venv-mindspore)."""
from __future__ import annotations


def read_configs(paths: list[str]) -> list[dict]:
    """Each config as ``MindFormerConfig`` parses it, as plain JSON-able data."""
    from mindformers.tools.register import MindFormerConfig

    def plain(obj):
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        return repr(obj)  # objects MindFormers adds itself (monitor defaults); not ours to check

    return [plain(MindFormerConfig(path)) for path in paths]
