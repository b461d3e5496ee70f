"""benchmarks/eval_batch.py: feature extraction at several evaluation batches, the features unchanged by it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.eval_batch import main


def test_every_batch_gives_the_same_features_and_a_rate(tmp_path: Path) -> None:
    out = tmp_path / "eval_batch.json"
    rows = main(["--widths", "4", "--batches", "32", "8", "--images", "64", "--float32", "--out", str(out)])
    assert [(r["width"], r["eval_batch"]) for r in rows] == [(4, 32), (4, 8)]
    assert all(r["images_per_s"] > 0 for r in rows)
    assert rows[1]["max_abs_diff"] < 1e-4  # eval mode: an image's features do not depend on its batch
    assert json.loads(out.read_text())["rows"] == rows
