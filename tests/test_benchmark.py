"""The throughput benchmark runs end to end and reports what the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_throughput_benchmark_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    args = [
        "--arch",
        "resnet_tiny",
        "--width",
        "4",
        "--batch",
        "16",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--workers",
        "0",
        "--images",
        "64",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "throughput.py"), *args],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    for path in ("project", "baseline"):
        assert report[path]["views_per_s"] > 0 and len(report[path]["repeats_s_per_step"]) == 2
        assert report[path]["s_per_epoch"] == report[path]["s_per_step"] * 100_000 / 32
    assert 0 < report["project"]["augment_fraction"] < 1.5
    assert report["speedup"] == report["project"]["views_per_s"] / report["baseline"]["views_per_s"]
    assert "speed-up project / baseline" in done.stdout
