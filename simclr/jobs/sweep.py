"""Multirun directories -> one table (markdown and CSV) and one plot; the Hydra end-of-sweep report.

    python -m simclr.jobs.sweep runs/ssl-multirun/<date>/<time>     # writes summary.md/.csv/.png there

A row per job: its overrides, status, final train loss, kNN top-1 on the validation set (the
monitor's last value) and on the test split (once, at the end), probe top-1 on validation and test
(when the job was probed: probe.enabled=true, or train_linear.py on its checkpoint), the objective,
which split selection used, and wall time. The objective is a validation metric (`objective`): the
probe's validation top-1 where the job was probed, else the kNN monitor's; jobs run with
data.val_size=0 have none (selection "test": their monitor ran on the test split). The completed job
with the highest objective is marked best (★). The plot (`simclr.jobs.sweep_plot`) shows the objective
against loss.temperature, one series per data.batch_size: lines through a grid, points for samples (an
Optuna study), the best job starred.

The same for an Optuna study (`-m sweep=temperature_batch` or `hydra/sweeper=optuna`): a directory per
trial (its number), and the sweeper's optimization_results.yaml at the end, whose best trial the
summary names and checks against the row marked best.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from simclr.jobs.sweep_plot import plot

log = logging.getLogger("simclr")
COLUMNS = (
    "job",
    "best",
    "pareto",
    "overrides",
    "status",
    "epochs",
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


def _last(rows: list[dict[str, str]], key: str, default: float | None = None) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key)]
    return values[-1] if values else default


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
    epochs = [int(r["epoch"]) for r in metrics if r.get("epoch")]
    row = {
        "job": job_dir.name,
        "overrides": " ".join(overrides or []),
        "params": dict(o.split("=", 1) for o in overrides or [] if "=" in o),
        "status": status.get("status", "unknown (no status.json: still running or killed)"),
        # Epochs trained: where a pruner stopped the trial, else the last epoch the metrics reach.
        "epochs": status.get("epoch") or (max(epochs) + 1 if epochs else None),
        # metrics.csv where the job wrote one (logger=csv), else its results.json (logger=wandb, tensorboard)
        "final_loss": _last(metrics, "train/loss_epoch", run.get("final_loss")),
        "val_knn_top1": _last(metrics, "val/knn_top1", run.get("val_knn_top1")),
        "test_knn_top1": _last(metrics, "test/knn_top1", run.get("test_knn_top1")),
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
        shown = [f"{k}={_short(r['params'][k])}" for k in varying if k in r["params"]]
        r["overrides"] = " ".join(shown) or r["overrides"]
    mark_best(rows)
    return rows


def mark_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sets row["best"]: True on the completed job with the highest objective (the first of equals, as
    Optuna's best trial), False elsewhere; returns that row, or None when no job has an objective."""
    best = None
    for r in rows:
        r["best"] = False
        value = r.get("objective")
        if r.get("status") != "completed" or value is None or not math.isfinite(value):
            continue  # a failed job's figures (if any) and val_size=0 jobs (no objective) are not candidates
        if best is None or value > best["objective"]:
            best = r
    if best is not None:
        best["best"] = True
    return best


def mark_pareto(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sets row["pareto"] for a study of two objectives (the objective, maximised, and the wall time,
    minimised): True on the completed jobs no other completed job beats on both, False elsewhere. Returns the
    front, fastest first."""
    done = [r for r in rows if r.get("status") == "completed" and r.get("objective") is not None and r.get("wall_s")]
    for r in rows:
        r["pareto"] = r in done and not any(
            o["objective"] >= r["objective"]
            and o["wall_s"] <= r["wall_s"]
            and (o["objective"], o["wall_s"]) != (r["objective"], r["wall_s"])
            for o in done
        )
    return sorted((r for r in rows if r["pareto"]), key=lambda r: r["wall_s"])


def _short(value: Any) -> str:
    """An override value for the table: Optuna's float samples (0.2588170214937917) to 4 significant
    digits; grid values (0.2, 512, resnet_tiny) as given."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    return f"{number:.4g}" if len(text) > 7 and ("." in text or "e" in text.lower()) else text


def _fmt(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "★"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def optuna_results(sweep_dir: Path) -> dict[str, Any] | None:
    """The Optuna sweeper's optimization_results.yaml (written when the study ends), or None."""
    path = Path(sweep_dir) / "optimization_results.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _same(shown: str | None, value: Any) -> bool:
    if shown is None:
        return False
    try:
        return float(shown) == float(value)  # overrides hold str(float), the yaml the float: exact both ways
    except (TypeError, ValueError):
        return str(shown).lower() == str(value).lower()


def optuna_note(rows: list[dict[str, Any]], results: dict[str, Any]) -> str:
    """One line for summary.md: the study's best trial, and whether it is the job marked best here."""
    if "best_params" not in results:  # several objectives: a Pareto front, which train_ssl.py never asks for
        return f"Optuna study (optimization_results.yaml): {len(results.get('solutions', []))} Pareto solutions."
    params, value = results["best_params"] or {}, results.get("best_value")
    text = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    head = f"Optuna's best trial (optimization_results.yaml): {text}, value {_fmt(value)}"
    jobs = [
        r for r in rows if r["status"] == "completed" and all(_same(r["params"].get(k), v) for k, v in params.items())
    ]
    best = next((r for r in rows if r.get("best")), None)
    if best is not None and best in jobs:
        return f"{head}: job {best['job']}, the row marked ★."
    if jobs:  # the job returned one figure to Optuna and the table reads another: worth a look
        marked = f"job {best['job']}" if best else "none"
        return f"{head}: job {jobs[0]['job']}, NOT the row marked ★ ({marked}); compare their results.json."
    return f"{head}: no job of this directory (a study continued from an earlier run's storage?)."


def write_tables(rows: list[dict[str, Any]], out: Path, notes: list[str] | None = None) -> None:
    """summary.csv (best as True/False) and summary.md (best as ★), with `notes` under the table."""
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "best": bool(r.get("best")), "pareto": bool(r.get("pareto"))} for r in rows)
    # The Pareto column only for a study of two objectives (mark_pareto ran); the CSV keeps every column.
    shown = [c for c in COLUMNS if c != "pareto" or any("pareto" in r for r in rows)]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for r in rows:
        cells = {c: _fmt(r.get(c)).replace("|", "/") for c in shown}
        if "pareto" in cells:
            cells["pareto"] = "front" if r.get("pareto") else ""
        lines.append("| " + " | ".join(cells.values()) + " |")
    if notes:
        lines += ["", *notes]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def sweeper(sweep_dir: Path) -> dict[str, Any]:
    """The hydra.sweeper node the jobs ran under (from a job's .hydra/hydra.yaml), or {}."""
    for path in sorted(Path(sweep_dir).glob("*/.hydra/hydra.yaml")):
        hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra", {})
        return hydra.get("sweeper") or {}
    return {}


def summarize(sweep_dir: Path) -> list[dict[str, Any]]:
    """Writes summary.md, summary.csv and summary.png in sweep_dir and returns the rows (best marked)."""
    rows = collect(sweep_dir)
    results = optuna_results(sweep_dir)
    ran_by = sweeper(sweep_dir)
    two_objectives = len(ran_by.get("directions") or []) == 2
    if two_objectives:
        mark_pareto(rows)
    write_tables(rows, sweep_dir, [optuna_note(rows, results)] if results else None)
    samples = results is not None or _ran_optuna(ran_by)
    plot(rows, sweep_dir / "summary.png", samples=samples, pareto=two_objectives)
    return rows


def report(sweep_dir: Path) -> str | None:
    """Writes the summary and logs the best job and the failed ones; returns the failure message, or None."""
    rows = summarize(sweep_dir)
    log.info("sweep of %d jobs done: summary in %s/summary.md", len(rows), sweep_dir)
    best = next((r for r in rows if r["best"]), None)
    if best is not None:
        log.info("best: job %s (%s), objective %.4f", best["job"], best["overrides"], best["objective"])
    pruned = [r for r in rows if r["status"] == "pruned"]
    if pruned:
        log.info("pruned: %s", ", ".join(f"job {r['job']} at epoch {r['epochs']}" for r in pruned))
    failed = [r for r in rows if r["status"] not in ("completed", "pruned")]
    for r in failed:
        log.error("job %s (%s) %s: %s", r["job"], r["overrides"], r["status"], r["error"])
    # A study with no completed trial has no best (optimization_results.yaml): nothing was found. One whose
    # completed trials ran in an earlier command of a stored study has one, even if this command's were pruned.
    if rows and _ran_optuna(sweeper(sweep_dir)) and optuna_results(sweep_dir) is None:
        return (
            f"error: no trial of the Optuna study completed ({len(failed)} failed, {len(pruned)} pruned); see "
            f"{sweep_dir}/summary.md, and why each ended in its {sweep_dir}/<trial>/status.json"
        )
    return f"{len(failed)} of {len(rows)} jobs failed; see {sweep_dir}/summary.md" if failed else None


def _ran_optuna(sweeper_node: dict[str, Any]) -> bool:
    """Whether a job's hydra.sweeper node is an Optuna sweeper (this project's, or hydra-optuna-sweeper's in
    directories written before)."""
    return "optuna" in str(sweeper_node.get("_target_", "")).lower()


class SweepReport(Callback):
    """Hydra callback: after a multirun (a grid or an Optuna study), writes the summary and names the best
    job and the jobs that failed; exit status 1 when a job failed, or when an Optuna study has no completed
    trial (one line that says so and where each trial's status.json is). Pruned trials are not failures."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        failed = report(Path(config.hydra.sweep.dir))
        if failed:  # the other jobs ran to the end; the exit status still tells scripts something failed
            raise SystemExit(failed)


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
