"""The README's quick start, as a user runs it, on the real data: accuracy and time on a 2-core CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REAL_ROOT, REPO, entry_point_env, run_entry_point

PROBE_FLOOR = 0.73  # linear-probe top-1 on the test split; the recipe measured 73.01% and 73.16% (seeds 0, 1)
# Pretraining plus probe took 793 s and 802 s (seeds 0 and 1) on a 2-core Intel Xeon where the README's benchmark
# command ran at 1,853 and 1,785 views/s before and after, in the same sitting; the time allowed scales with this
# machine's rate, measured first, with a margin of a quarter (machines of one type differ by a third).
REFERENCE_S, REFERENCE_VIEWS_PER_S, MARGIN = 798, 1819, 1.25
# The README's bf16 benchmark command, whose rate README's quick-start table gives beside its times.
BENCHMARK = [
    *("--arch", "resnet_tiny", "--width", "16", "--batch", "256", "--skip-baseline"),
    *("trainer=cpu", "trainer.precision=bf16-mixed"),
]


def _views_per_s(cwd: Path) -> float:
    """trainer.fit's views/s from the README's benchmark command, on this machine."""
    out = cwd / "throughput.json"
    args = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), *BENCHMARK, "--out", str(out)]
    proc = subprocess.run(args, cwd=cwd, env=entry_point_env(all_cores=True), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())["rows"]["trainer_fit"]["views_per_s"]


def _run(script: str, args: list[str], cwd: Path) -> float:
    """Runs a script to completion on every core (without the suite's one-thread limit); returns its wall time."""
    start = time.perf_counter()
    proc = run_entry_point(script, *args, cwd=cwd, env=entry_point_env(all_cores=True), timeout=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.perf_counter() - start


@pytest.mark.slow
@pytest.mark.timeout(60 * 60)  # over any limit it computes, so a slow run fails on the assertion, not a kill
@pytest.mark.skipif(not (REAL_ROOT / "cifar-10-batches-py").is_dir(), reason=f"real CIFAR-10 not in {REAL_ROOT}")
def test_quickstart_reaches_its_accuracy_in_its_time(tmp_path: Path) -> None:
    limit_s = REFERENCE_S * REFERENCE_VIEWS_PER_S / _views_per_s(tmp_path) * MARGIN
    data = [f"data.root={REAL_ROOT}", "data.download=false", "trainer.enable_progress_bar=false"]
    pretrain_s = _run("train_ssl.py", ["experiment=quickstart", *data, "hydra.run.dir=ssl"], tmp_path)
    ckpt = tmp_path / "ssl" / "checkpoints" / "last.ckpt"
    probe = [f"ckpt={ckpt}", "trainer=cpu", "probe.flip_average=true", *data, "hydra.run.dir=probe"]
    probe_s = _run("train_linear.py", probe, tmp_path)
    results = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert results["test_top1"] >= PROBE_FLOOR, results
    assert pretrain_s + probe_s <= limit_s, (pretrain_s, probe_s, limit_s)
