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


def versions(packages: list[str]) -> dict[str, str]:
    """Installed versions, without importing the packages."""
    from importlib.metadata import version

    return {name: version(name) for name in packages}


def build_parts(paths: list[str]) -> list[dict]:
    """:func:`build_part` of each YAML, in one process."""
    return [build_part(p) for p in paths]


def build_part(path: str) -> dict:
    """The optimizer, learning-rate schedule and rotary table of a rendered finetune YAML, each built by MindFormers'
    own builders from exactly the rendered keys (a keyword its class does not take fails here)."""
    import mindspore as ms
    from mindformers.core.lr import build_lr
    from mindformers.core.optim import build_optim
    from mindformers.modules.layers import FreqsMgr
    from mindformers.tools.register import MindFormerConfig
    from mindspore import nn

    config = MindFormerConfig(path)
    lr_config = config.lr_schedule
    total = lr_config.total_steps if lr_config.total_steps and lr_config.total_steps > 0 else 100
    lr = build_lr(lr_config, default_args={"total_steps": total})
    params = nn.Dense(4, 4).trainable_params()
    optimizer = build_optim(config.optimizer, default_args={"params": params, "learning_rate": lr})
    mc = config.model.model_config
    scaling = mc.scaling_factor.to_dict() if hasattr(mc.scaling_factor, "to_dict") else mc.scaling_factor
    freqs = FreqsMgr(
        head_dim=mc.hidden_size // mc.num_heads,
        seq_length=mc.seq_length,
        max_position_embedding=mc.max_position_embedding,
        rotary_dtype=ms.float32,
        theta=mc.theta,
        scaling_factor=scaling,
        extend_method=mc.extend_method,
    )
    import numpy as np

    half = mc.hidden_size // mc.num_heads // 2
    return {
        "optimizer": type(optimizer).__name__,
        "lr_schedule": type(lr).__name__,
        "rope": mc.extend_method,
        # position 1's angles are the inverse frequencies themselves (all below pi / 2)
        "inv_freq": np.arcsin(freqs.freqs_sin.asnumpy()[1, :half].astype(np.float64)).tolist(),
    }
