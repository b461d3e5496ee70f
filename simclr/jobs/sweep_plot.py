"""The sweep summary's plot: the objective against one swept parameter, a series per value of another.

`simclr.jobs.sweep` collects the rows (one per job, as `read_job` makes them: "params" the job's
overrides as {key: value string}, "job", "best", and the accuracies as fractions in [0, 1] or None) and
writes them as tables; this module draws them, in percent, into summary.png. Kept apart because it is the
only part of the summary that needs matplotlib, imported when the plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTTED = {  # the first of these that any job has is plotted; test ones only when no job has a validation set
    "probe_val_top1": "linear probe top-1, validation",
    "val_knn_top1": "kNN top-1, validation",
    "probe_test_top1": "linear probe top-1, TEST (no validation split)",
    "test_knn_top1": "kNN top-1, TEST (no validation split)",
}


def _numeric(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _x_key(rows: list[dict[str, Any]], x: str, group: str) -> str | None:
    """`x` when some job sets it, else the first other parameter that varies and is numeric (an Optuna
    study of optimizer.lr alone, say); None: the jobs are plotted against their number."""
    if any(x in r["params"] for r in rows):
        return x
    for key in dict.fromkeys(k for r in rows for k in r["params"]):
        values = {r["params"].get(key) for r in rows}
        if key != group and len(values) > 1 and all(_numeric(v) is not None for v in values if v is not None):
            return key
    return None


def plot(
    rows: list[dict[str, Any]],
    path: Path,
    x: str = "loss.temperature",
    group: str = "data.batch_size",
    samples: bool = False,
    pareto: bool = False,
) -> str:
    """The objective (validation top-1) against `x`, one series per value of `group`, the best job starred;
    returns the column plotted. A grid's series are lines; `samples` (an Optuna study's trials, scattered
    over the ranges) are points, a pruned trial's an open circle at the last figure it reached. x is
    logarithmic when it spans a factor of 4 or more. With `pareto` (two objectives), a second panel shows the
    objective against wall time, the Pareto front (`row["pareto"]`) joined."""
    from simclr.evaluation.visuals import new_figure

    metric = next((m for m in PLOTTED if any(r[m] is not None for r in rows)), "val_knn_top1")
    x = _x_key(rows, x, group) or "job"
    series: dict[str, list[tuple[float, float]]] = {}
    pruned: list[tuple[float, float, int | None]] = []  # (x, top-1 %, epochs trained)
    best_point = None
    for r in rows:
        at = _numeric(r["job"] if x == "job" else r["params"].get(x))
        if r[metric] is None or at is None:
            continue
        if r.get("status") == "pruned":
            pruned.append((at, 100 * r[metric], r.get("epochs")))
            continue
        series.setdefault(str(r["params"].get(group, "default")), []).append((at, 100 * r[metric]))
        if r.get("best"):
            best_point = (at, 100 * r[metric], r["job"])
    fig, axes = new_figure(figsize=(10, 3.5) if pareto else (5, 3.5), ncols=2 if pareto else 1)
    ax = axes[0] if pareto else axes
    for label, points in sorted(series.items(), key=lambda kv: _numeric(kv[0]) or 0.0):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(
            xs,
            ys,
            marker="o",
            linestyle="none" if samples else "-",
            alpha=0.8 if samples else 1.0,
            label=f"{group}={label}",
        )
    if pruned:
        xs, ys, _ = zip(*pruned, strict=True)
        ax.plot(
            xs,
            ys,
            marker="o",
            markerfacecolor="none",
            color="grey",
            linestyle="none",
            label="pruned (last figure, at epoch)",
        )
        for at, top1, epoch in pruned:
            ax.annotate(f"{epoch}", (at, top1), textcoords="offset points", xytext=(4, -9), fontsize=7, color="grey")
    if best_point is not None:
        ax.margins(x=0.08, y=0.15)  # room for the star and its label inside the axes
        ax.plot(*best_point[:2], marker="*", markersize=16, color="gold", markeredgecolor="black", linestyle="none")
        ax.annotate(f"best: job {best_point[2]}", best_point[:2], textcoords="offset points", xytext=(6, 6), fontsize=8)
    xs_all = [at for points in series.values() for at, _ in points] + [at for at, _, _ in pruned]
    if xs_all and min(xs_all) > 0 and max(xs_all) >= 4 * min(xs_all) and x != "job":
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # Plain numbers (0.05, 0.1, 0.2, ...), not powers of ten: a small grid's own values, else 1-2-5 steps.
        grid_values = sorted(set(xs_all))
        small_grid = not samples and len(grid_values) <= 8
        ax.xaxis.set_major_locator(FixedLocator(grid_values) if small_grid else LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(x)
    ax.set_ylabel(f"{PLOTTED[metric]} (%)")
    ax.grid(alpha=0.3)
    if series or pruned:
        ax.legend(fontsize=8)
    if pareto:
        _pareto_panel(axes[1], rows, metric)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return metric


def _pareto_panel(ax: Any, rows: list[dict[str, Any]], metric: str) -> None:
    """The completed trials' objective against wall time, the Pareto front (`row["pareto"]`) joined and labelled."""
    done = [r for r in rows if r.get("status") == "completed" and r.get(metric) is not None and r.get("wall_s")]
    ax.plot([r["wall_s"] for r in done], [100 * r[metric] for r in done], "o", alpha=0.6, label="completed trials")
    front = sorted((r for r in done if r.get("pareto")), key=lambda r: r["wall_s"])
    if front:
        xs, ys = [r["wall_s"] for r in front], [100 * r[metric] for r in front]
        ax.plot(xs, ys, drawstyle="steps-post", color="black", marker="D", label="Pareto front")
        for r in front:
            ax.annotate(
                f"job {r['job']}",
                (r["wall_s"], 100 * r[metric]),
                textcoords="offset points",
                xytext=(5, -10),
                fontsize=8,
            )
    ax.set_xlabel("trial wall time (s)")
    ax.set_ylabel(f"{PLOTTED[metric]} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
