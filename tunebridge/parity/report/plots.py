"""Loss-curve figures as PNG bytes (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import io

from ...backends.result import RunResult


def loss_figure(runs: dict[str, RunResult], first_rel: float = 0.005, mean_rel: float = 0.01) -> bytes:
    """:func:`loss_plot` as PNG bytes."""
    import matplotlib.pyplot as plt

    fig = loss_plot(runs, first_rel, mean_rel)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def loss_plot(runs: dict[str, RunResult], first_rel: float = 0.005, mean_rel: float = 0.01):
    """Loss curves overlaid (top) and each run's per-step relative error against the first run (bottom), on a
    log scale: parity runs agree to 1e-8..1e-6 %, failing ones by whole percents. Steps that agree exactly
    (error 0) have no place on a log scale: the legend counts them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True, height_ratios=(3, 2))
    for name in names:
        steps = runs[name].steps
        top.plot(
            [s.step for s in steps],
            [s.loss for s in steps],
            marker="o" if len(steps) <= 40 else None,
            markersize=3,
            linewidth=1.4,
            label=f"{name} ({runs[name].backend})",
        )
    top.set_ylabel("loss")
    top.set_title("training loss")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    ref = {s.step: s.loss for s in runs[names[0]].steps}
    for name in names[1:]:
        pts = [
            (s.step, abs(s.loss - ref[s.step]) / abs(ref[s.step]) * 100)
            for s in runs[name].steps
            if s.step in ref and ref[s.step] != 0
        ]
        shown = [(step, err) for step, err in pts if err > 0]
        exact = len(pts) - len(shown)
        label = f"{name} vs {names[0]}" + (f" ({exact} steps equal, not shown)" if exact else "")
        if shown:
            bottom.plot(
                *zip(*shown), marker="o" if len(shown) <= 40 else None, markersize=3, linewidth=1.2, label=label
            )
        elif exact:
            bottom.plot([], [], label=label)
    bottom.set_yscale("log")
    bottom.axhline(
        100 * first_rel,
        color="tab:orange",
        linestyle="--",
        linewidth=0.8,
        label=f"first-step bar {100 * first_rel:g} %",
    )
    bottom.axhline(
        100 * mean_rel, color="tab:red", linestyle=":", linewidth=0.8, label=f"mean bar {100 * mean_rel:g} %"
    )
    bottom.set_ylabel("relative error (%, log scale)")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig
