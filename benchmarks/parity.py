"""Does the on-device augmentation learn as well as the public per-image torchvision pipeline?

Runs `train_ssl.py` once per (backend, seed) with the same recipe, reads each run's results.json, and
reports the kNN top-1 of both backends and their difference (device minus torchvision, in points):

    python benchmarks/parity.py --out runs/parity                      # quick start, seeds 0 and 1
    python benchmarks/parity.py --out runs/parity --seeds 0 -- experiment=quickstart_short trainer.max_epochs=2

Everything after `--` is the recipe, given to train_ssl.py for both backends (default:
experiment=quickstart_short). A run whose directory already holds results.json is read, not rerun, so an
interrupted comparison continues.
Writes <out>/parity.json. The selection metric is val/knn_top1 (the validation split); test/knn_top1 is
reported beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("device", "torchvision")
DEFAULT_RECIPE = ["experiment=quickstart_short"]


def run_one(out: Path, backend: str, seed: int, recipe: list[str]) -> dict[str, Any]:
    """results.json of one pretraining run (made now unless it exists), plus its directory."""
    run_dir = out / f"{backend}_seed{seed}"
    results = run_dir / "results.json"
    if not results.is_file():
        args = [*recipe, f"augmentation.backend={backend}", f"seed={seed}", f"hydra.run.dir={run_dir}"]
        args.append("trainer.enable_progress_bar=false")
        log = out / f"{backend}_seed{seed}.log"
        with open(log, "w") as f:
            command = [sys.executable, str(REPO / "train_ssl.py"), *args]
            proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0 or not results.is_file():
            raise SystemExit(f"error: train_ssl.py {' '.join(args)} failed (exit {proc.returncode}); see {log}")
    return {**json.loads(results.read_text()), "run_dir": str(run_dir)}


def compare(out: Path, seeds: list[int], recipe: list[str]) -> dict[str, Any]:
    """Both backends at every seed; the mean difference device - torchvision in kNN points."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"backend": b, "seed": s, **_figures(run_one(out, b, s, recipe))} for s in seeds for b in BACKENDS]
    mean = {
        b: {k: statistics.fmean(r[k] for r in rows if r["backend"] == b) for k in ("val_knn", "test_knn")}
        for b in BACKENDS
    }
    report = {
        "recipe": recipe,
        "seeds": seeds,
        "rows": rows,
        "mean": mean,
        "val_gap_points": 100 * (mean["device"]["val_knn"] - mean["torchvision"]["val_knn"]),
        "test_gap_points": 100 * (mean["device"]["test_knn"] - mean["torchvision"]["test_knn"]),
    }
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _figures(results: dict[str, Any]) -> dict[str, Any]:
    return {
        "val_knn": results["val_knn_top1"],
        "test_knn": results["test_knn_top1"],
        "wall_s": results["wall_s"],
        "run_dir": results["run_dir"],
    }


def print_table(report: dict[str, Any]) -> None:
    print("| backend | seed | val kNN top-1 | test kNN top-1 | wall s |")
    print("|---|---|---|---|---|")
    for r in report["rows"]:
        val, test = 100 * r["val_knn"], 100 * r["test_knn"]
        print(f"| {r['backend']} | {r['seed']} | {val:.2f}% | {test:.2f}% | {r['wall_s']:.0f} |")
    for b, m in report["mean"].items():
        print(f"| {b} | mean | {100 * m['val_knn']:.2f}% | {100 * m['test_knn']:.2f}% | |")
    val, test = report["val_gap_points"], report["test_gap_points"]
    print(f"device - torchvision: {val:+.2f} points (val), {test:+.2f} (test)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    recipe = DEFAULT_RECIPE
    if "--" in argv:
        cut = argv.index("--")
        argv, recipe = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder of the runs and parity.json")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    print_table(compare(args.out, args.seeds, recipe))


if __name__ == "__main__":
    main()
