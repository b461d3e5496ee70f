"""The arithmetic and the one table of benchmarks/gpu_check.sh.

python benchmarks/gpu_check_report.py epochs THROUGHPUT_JSON --budget-s 300 --max-epochs 100 [--limit N]
    prints "EPOCHS S_PER_EPOCH": the pretraining epochs that fit the budget (s), from trainer.fit's
    measured s/step, its setup and first-step overhead, and --fixed-s for the rest (process start,
    the final kNN pass, figures).
python benchmarks/gpu_check_report.py report WORK_DIR OUT_DIR
    reads what gpu_check.sh left in WORK_DIR (throughput.json, sync.json, ssl/metrics.csv, the probes'
    results.json, steps.txt) and writes OUT_DIR/gpu_check.json, OUT_DIR/table.md and
    OUT_DIR/ssl_metrics.csv; prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

CIFAR_TRAIN_IMAGES = 50_000
# dkobak/simclr-cifar10 README @c89f9cd, "Training ResNet18 for 100 epochs": kNN k=10 and Adam on fixed
# features (docs/reference_recipes.md, "Published figures", P4)
PUBLIC_100_EPOCHS = {"knn": 0.832, "linear": 0.856}


def plan_epochs(
    fit: dict[str, Any], budget_s: float, max_epochs: int, fixed_s: float, limit: int | None
) -> tuple[int, float]:
    """(epochs, s per epoch) for a run of at most budget_s seconds, from the trainer.fit row.

    s per epoch: the steps of one epoch (50,000 // batch, or --limit) at the measured s/step, which
    includes epoch ends when the timed steps crossed them. Overheads paid once: the row's setup and
    teardown, the warm-up steps' excess over steady steps (autotuning), and fixed_s.
    """
    steps = CIFAR_TRAIN_IMAGES // fit["batch"]
    if limit:
        steps = min(steps, limit)
    s_epoch = steps * fit["s_per_step"]
    first = max(0.0, fit["warmup_s"] - fit["warmup"] * fit["s_per_step"])
    once = fit["setup_s"] + fit["teardown_s"] + first + fixed_s
    epochs = int((budget_s - once) // s_epoch) if s_epoch > 0 else max_epochs
    return max(1, min(max_epochs, epochs)), s_epoch


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def pretraining(metrics_csv: Path) -> dict[str, Any]:
    """Epochs run, s/epoch (median of epochs after the first), first epoch s, views/s, the last validation
    kNN top-1 and the test kNN top-1 evaluated once at the end (the one comparable to published figures)."""
    if not metrics_csv.is_file():
        return {}
    rows = list(csv.DictReader(metrics_csv.open()))
    column = lambda key: [float(r[key]) for r in rows if r.get(key)]  # noqa: E731
    epoch_s, vps, knn = column("time/epoch_s"), column("time/views_per_s"), column("val/knn_top1")
    test_knn = column("test/knn_top1")
    return {
        "epochs_run": len(epoch_s),
        "s_per_epoch": statistics.median(epoch_s[1:] or epoch_s) if epoch_s else None,
        "first_epoch_s": epoch_s[0] if epoch_s else None,
        "views_per_s": statistics.median(vps[1:] or vps) if vps else None,
        "knn_top1": knn[-1] if knn else None,
        "test_knn_top1": test_knn[-1] if test_knn else None,
    }


def collect(work: Path) -> dict[str, Any]:
    """Everything gpu_check.sh measured, from its work directory."""
    steps = {}
    if (work / "steps.txt").is_file():
        for line in (work / "steps.txt").read_text().splitlines():
            name, rc, seconds = line.split()
            steps[name] = {"rc": int(rc), "s": int(seconds)}
    probe = read_json(newest(list(work.glob("ssl/linear/*/results.json"))) or Path("-"))
    random = read_json(work / "random" / "results.json")
    return {
        "throughput": read_json(work / "throughput.json"),
        "sync_check": read_json(work / "sync.json"),
        "plan": read_json(work / "plan.json"),
        "pretraining": pretraining(work / "ssl" / "metrics.csv"),
        "probe_top1": probe["test_top1"] if probe else None,
        "random_probe_top1": random["test_top1"] if random else None,
        "steps": steps,
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def num(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def table(r: dict[str, Any]) -> str:
    """One Markdown table of every figure, then the comparison at 100 epochs where the run got there."""
    tp, sync, pre, plan = r["throughput"] or {}, r["sync_check"] or {}, r["pretraining"], r["plan"] or {}
    env, rows, aug, ratios = (tp.get(k, {}) for k in ("environment", "rows", "augmentation", "ratios"))
    cfg = tp.get("config", {})
    lines = ["| figure | value |", "|---|---|"]
    add = lambda k, v: lines.append(f"| {k} | {v} |")  # noqa: E731
    add("GPU / driver", f"{env.get('device', '-')} / {env.get('driver', '-')}")
    add("torch / lightning / CUDA", f"{env.get('torch', '-')} / {env.get('lightning', '-')} / {env.get('cuda', '-')}")
    add("config", f"{cfg.get('arch')} width {cfg.get('width')}, batch {cfg.get('batch')}, {cfg.get('precision')}")
    for row in rows.values():
        add(f"views/s: {row['label']}", f"{num(row['views_per_s'])} ({row['s_per_step']:.4f} s/step)")
    for key, value in ratios.items():
        add(f"ratio {key.replace('_over_', ' / ')}", f"{value:.2f}")
    if aug:
        add("augmentation share of the bare step", pct(aug.get("share_of_bare_step")))
        add(
            "ops per view, eager / compiled",
            f"{aug.get('ops_per_view_eager', '-')} / {aug.get('ops_per_view_compiled', '-')}",
        )
        add(
            "CUDA launches per view, eager / compiled",
            f"{aug.get('cuda_launches_per_view_eager', '-')} / {aug.get('cuda_launches_per_view_compiled', '-')}",
        )
    util = tp.get("utilisation") or {}
    if util:
        peak = util["peak"]
        add("FLOPs a view, forward + backward (torch's counter)", f"{util['flops_per_view'] / 1e9:.3f} GFLOP")
        add("model FLOP/s through trainer.fit", f"{util['model_flops_per_s'] / 1e12:.2f} TFLOP/s")
        add(f"peak matmul FLOP/s ({peak['dtype']}, n = {peak['size']})", f"{peak['flops_per_s'] / 1e12:.1f} TFLOP/s")
        add("MFU", pct(util["mfu"]))
        phases = util["phases_s_per_step"]
        total = sum(phases.values())
        add("one eager step by phase", ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in phases.items()))
    add(
        "sync check",
        sync.get("status", "not run") + (f" ({sync['checked_steps']} steps)" if "checked_steps" in sync else ""),
    )
    add("pretraining epochs run (planned)", f"{pre.get('epochs_run', '-')} ({plan.get('epochs', '-')})")
    add(
        "s/epoch (median after the first) / first epoch",
        f"{num(pre.get('s_per_epoch'), '.2f')} / {num(pre.get('first_epoch_s'), '.2f')}",
    )
    add("views/s in training (median)", num(pre.get("views_per_s")))
    add("kNN top-1, validation / test", f"{pct(pre.get('knn_top1'))} / {pct(pre.get('test_knn_top1'))}")
    add("linear probe top-1 (test)", pct(r["probe_top1"]))
    add(
        "random-encoder probe top-1",
        pct(r["random_probe_top1"]) if r["random_probe_top1"] is not None else "not run (time)",
    )
    add("stages (exit status, s)", ", ".join(f"{k} {v['rc']}/{v['s']}s" for k, v in r["steps"].items()))
    out = "\n".join(lines)
    if (pre.get("epochs_run") or 0) >= 100:
        out += (
            f"\n\nAt {pre['epochs_run']} epochs: test kNN {pct(pre.get('test_knn_top1'))} "
            "(public ResNet-18 at 100 epochs: "
            f"{pct(PUBLIC_100_EPOCHS['knn'])}), linear probe {pct(r['probe_top1'])} (public: "
            f"{pct(PUBLIC_100_EPOCHS['linear'])})."
        )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("epochs")
    e.add_argument("throughput")
    e.add_argument("--budget-s", type=float, required=True)
    e.add_argument("--max-epochs", type=int, default=100)
    e.add_argument("--fixed-s", type=float, default=15.0)
    e.add_argument("--limit", type=int)
    e.add_argument("--plan-out")
    rp = sub.add_parser("report")
    rp.add_argument("work", type=Path)
    rp.add_argument("out", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "epochs":
        fit = json.loads(Path(args.throughput).read_text())["rows"]["trainer_fit"]
        epochs, s_epoch = plan_epochs(fit, args.budget_s, args.max_epochs, args.fixed_s, args.limit)
        if args.plan_out:
            plan = {"epochs": epochs, "s_per_epoch_expected": s_epoch, "budget_s": args.budget_s}
            Path(args.plan_out).write_text(json.dumps(plan) + "\n")
        print(epochs, f"{s_epoch:.3f}")
        return
    result = collect(args.work)
    text = table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "table.md").write_text(text + "\n")
    if (args.work / "ssl" / "metrics.csv").is_file():
        shutil.copy(args.work / "ssl" / "metrics.csv", args.out / "ssl_metrics.csv")
    print(text)


if __name__ == "__main__":
    main()
