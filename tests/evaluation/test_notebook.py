"""The notebook runs end to end against a small checkpoint made by the tests."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers import REPO

NOTEBOOK = REPO / "notebooks" / "explore_encoder.ipynb"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")


def test_notebook_runs_on_a_checkpoint(ssl_checkpoint: Path, cifar_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIMCLR_CKPT", str(ssl_checkpoint))
    monkeypatch.setenv("SIMCLR_DATA", str(cifar_root))
    monkeypatch.setenv("SIMCLR_PROBE_STEPS", "20")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # view pairs, embedding map, neighbours, per-class accuracy
    assert any("test top-1" in o.get("text", "") for o in outputs)
