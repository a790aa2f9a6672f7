"""Loss-curve figures as PNG bytes (matplotlib, Agg: no display needed)."""
from __future__ import annotations

import io

from ..backends.result import RunResult


def loss_figure(runs: dict[str, RunResult], first_rel: float = 0.005, mean_rel: float = 0.01) -> bytes:
    """Loss curves overlaid (top) and each run's per-step relative error against the first run (bottom)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True, height_ratios=(3, 2))
    for name in names:
        steps = runs[name].steps
        top.plot([s.step for s in steps], [s.loss for s in steps], marker="o" if len(steps) <= 40 else None,
                 markersize=3, linewidth=1.4, label=f"{name} ({runs[name].backend})")
    top.set_ylabel("loss")
    top.set_title("training loss")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    ref = {s.step: s.loss for s in runs[names[0]].steps}
    for name in names[1:]:
        pts = [(s.step, abs(s.loss - ref[s.step]) / abs(ref[s.step]) * 100) for s in runs[name].steps
               if s.step in ref and ref[s.step] != 0]
        if pts:
            bottom.plot(*zip(*pts), marker="o" if len(pts) <= 40 else None, markersize=3, linewidth=1.2,
                        label=f"{name} vs {names[0]}")
    bottom.axhline(100 * first_rel, color="tab:orange", linestyle="--", linewidth=0.8,
                   label=f"first-step bar {100 * first_rel:g} %")
    bottom.axhline(100 * mean_rel, color="tab:red", linestyle=":", linewidth=0.8, label=f"mean bar {100 * mean_rel:g} %")
    bottom.set_ylabel("relative error (%)")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
