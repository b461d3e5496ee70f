"""Multirun directories -> one table (markdown and CSV) and one plot; the Hydra end-of-sweep report.

    python -m simclr.sweep runs/ssl-multirun/<date>/<time>     # writes summary.md/.csv/.png there

A row per job: its overrides, status, final train loss, kNN top-1 on the validation set (the
monitor's last value) and on the test split (once, at the end), probe top-1 on validation and test
(when the job was probed: probe.enabled=true, or train_linear.py on its checkpoint), the objective,
which split selection used, and wall time. The objective is a validation metric (`objective`): the
probe's validation top-1 where the job was probed, else the kNN monitor's; jobs run with
data.val_size=0 have none (selection "test": their monitor ran on the test split). The plot shows the
objective against loss.temperature, one line per data.batch_size.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("simclr")
COLUMNS = (
    "job",
    "overrides",
    "status",
    "final_loss",
    "val_knn_top1",
    "test_knn_top1",
    "probe_val_top1",
    "probe_test_top1",
    "objective",
    "selection",
    "wall_s",
    "error",
)
# What a sweep selects on, best first: validation metrics only, never a test metric.
OBJECTIVES = ("probe/val_top1", "val/knn_top1")


def objective(metrics: dict[str, Any]) -> tuple[str | None, float | None]:
    """(name, value) of a run's selection metric: the probe's validation top-1 when the run was probed,
    else the kNN monitor's; (None, None) with data.val_size=0, where there is no validation set."""
    for name in OBJECTIVES:
        if metrics.get(name) is not None:
            return name, float(metrics[name])
    return None, None


def _last(rows: list[dict[str, str]], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key)]
    return values[-1] if values else None


def read_job(job_dir: Path) -> dict[str, Any]:
    """One job directory of a multirun -> a summary row (missing figures are None)."""
    status = json.loads((job_dir / "status.json").read_text()) if (job_dir / "status.json").is_file() else {}
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else status.get("overrides", [])
    metrics: list[dict[str, str]] = []
    if (job_dir / "metrics.csv").is_file():
        with open(job_dir / "metrics.csv") as f:
            metrics = list(csv.DictReader(f))
    probes = sorted(job_dir.glob("linear/*/results.json"), key=lambda p: p.stat().st_mtime)
    probe = json.loads(probes[-1].read_text()) if probes else {}
    run = json.loads((job_dir / "results.json").read_text()) if (job_dir / "results.json").is_file() else {}
    row = {
        "job": job_dir.name,
        "overrides": " ".join(overrides or []),
        "params": dict(o.split("=", 1) for o in overrides or [] if "=" in o),
        "status": status.get("status", "unknown (no status.json: still running or killed)"),
        "final_loss": _last(metrics, "train/loss_epoch"),
        "val_knn_top1": _last(metrics, "val/knn_top1"),
        "test_knn_top1": _last(metrics, "test/knn_top1"),
        "probe_val_top1": probe.get("val_top1"),
        "probe_test_top1": probe.get("test_top1"),
        "selection": run.get("selection") or probe.get("selection"),
        "wall_s": status.get("wall_s"),
        "error": status.get("error"),
    }
    _, row["objective"] = objective({"probe/val_top1": row["probe_val_top1"], "val/knn_top1": row["val_knn_top1"]})
    return row


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    jobs = [
        d for d in Path(sweep_dir).iterdir() if d.is_dir() and ((d / ".hydra").is_dir() or (d / "status.json").exists())
    ]
    rows = [read_job(d) for d in sorted(jobs, key=lambda d: (len(d.name), d.name))]
    # The table shows what the sweep varied; overrides shared by every job are the sweep's setting.
    varying = [
        k for k in dict.fromkeys(k for r in rows for k in r["params"]) if len({r["params"].get(k) for r in rows}) > 1
    ]
    for r in rows:
        r["overrides"] = " ".join(f"{k}={r['params'][k]}" for k in varying if k in r["params"]) or r["overrides"]
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]).replace("|", "/") for c in COLUMNS) + " |" for r in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


PLOTTED = {  # the first of these that any job has is plotted; test ones only when no job has a validation set
    "probe_val_top1": "linear probe top-1, validation",
    "val_knn_top1": "kNN top-1, validation",
    "probe_test_top1": "linear probe top-1, TEST (no validation split)",
    "test_knn_top1": "kNN top-1, TEST (no validation split)",
}


def plot(rows: list[dict[str, Any]], path: Path, x: str = "loss.temperature", group: str = "data.batch_size") -> str:
    """The objective (validation top-1) against `x`, one line per value of `group`; returns the column plotted."""
    from simclr.visuals import new_figure

    metric = next((m for m in PLOTTED if any(r[m] is not None for r in rows)), "val_knn_top1")
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r[metric] is not None and x in r["params"]:
            lines.setdefault(r["params"].get(group, "default"), []).append((float(r["params"][x]), 100 * r[metric]))
    fig, ax = new_figure(figsize=(5, 3.5))
    for label, points in sorted(lines.items(), key=lambda kv: float(kv[0]) if kv[0].isdigit() else 0):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(xs, ys, marker="o", label=f"{group}={label}")
    ax.set_xlabel(x)
    ax.set_ylabel(f"{PLOTTED[metric]} (%)")
    ax.grid(alpha=0.3)
    if lines:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return metric


def summarize(sweep_dir: Path) -> list[dict[str, Any]]:
    """Writes summary.md, summary.csv and summary.png in sweep_dir and returns the rows."""
    rows = collect(sweep_dir)
    write_tables(rows, sweep_dir)
    plot(rows, sweep_dir / "summary.png")
    return rows


class SweepReport(Callback):
    """Hydra callback: after a multirun, writes the summary and names the jobs that failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize(sweep_dir)
        failed = [r for r in rows if r["status"] != "completed"]
        log.info("sweep of %d jobs done: summary in %s/summary.md", len(rows), sweep_dir)
        for r in failed:
            log.error("job %s (%s) %s: %s", r["job"], r["overrides"], r["status"], r["error"])
        if failed:  # the other jobs ran to the end; the exit status still tells scripts something failed
            raise SystemExit(f"{len(failed)} of {len(rows)} jobs failed; see {sweep_dir}/summary.md")


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a multirun directory of train_ssl.py")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args()
    if not args.sweep_dir.is_dir():
        raise SystemExit(f"error: {args.sweep_dir} is not a directory; pass runs/ssl-multirun/<date>/<time>")
    rows = summarize(args.sweep_dir)
    print((args.sweep_dir / "summary.md").read_text(), end="")
    print(f"{len(rows)} jobs; wrote summary.md, summary.csv, summary.png in {args.sweep_dir}")


if __name__ == "__main__":
    main()
