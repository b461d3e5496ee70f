"""A CSV logger that appends: resuming a run in its own directory keeps the metrics already logged.

Lightning's CSVLogger deletes an existing metrics.csv when it starts, appends rows in place and rewrites the
whole file in place when a column is added, so a restart loses the rows and a full disk can leave half a row.
This logger writes the same files in the same format (metrics.csv: a `step` column, the columns sorted, one
row per logged dict; hparams.yaml through `save_hparams_to_yaml`), but keeps and extends an existing
metrics.csv, replaces it whole (`atomic_write_text`) when a column is added, and cuts a failed append back.

It is built on Lightning's public `Logger` interface only: the writer of CSVLogger and its methods are
private and may change in any minor release.
"""

from __future__ import annotations

import csv
import io
import os
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import Logger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from simclr.storage import atomic_write_text


class AppendingWriter:
    """metrics.csv and hparams.yaml of one log directory: the logger's `experiment`.

    Rows are kept in memory until `save`; a save that fails keeps them there and leaves metrics.csv as it was.
    """

    NAME_METRICS_FILE = "metrics.csv"
    NAME_HPARAMS_FILE = "hparams.yaml"

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = os.path.join(log_dir, self.NAME_METRICS_FILE)
        self.metrics: list[dict[str, Any]] = []
        self.hparams: dict[str, Any] = {}
        os.makedirs(log_dir, exist_ok=True)
        # A resumed or requeued run appends, starting from the columns the file already has.
        self.metrics_keys: list[str] = self._header()

    def log_metrics(self, metrics: Mapping[str, Tensor | float], step: int | None = None) -> None:
        """Records one row (written by the next `save`)."""
        if step is None:
            step = len(self.metrics)
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        row["step"] = step
        self.metrics.append(row)

    def log_hparams(self, params: Mapping[str, Any]) -> None:
        """Adds to the hyperparameters and writes them all to hparams.yaml."""
        self.hparams.update(params)
        save_hparams_to_yaml(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE), self.hparams)

    def save(self) -> None:
        """Appends the recorded rows; a new column first replaces the file whole with the wider header."""
        if not self.metrics:
            return
        size = self._size()
        keys = self._keys_with(self.metrics)
        if size and keys != self.metrics_keys:
            self._rewrite(keys)
            size = self._size()
        self.metrics_keys = keys  # only once the file has this header (a failed rewrite leaves the old one)
        self._append(size)
        self.metrics = []

    def _keys_with(self, rows: list[dict[str, Any]]) -> list[str]:
        """The columns once `rows` are in: the same if they bring no new key, else all of them sorted (as Lightning)."""
        new = set().union(*rows) - set(self.metrics_keys)
        return sorted([*self.metrics_keys, *new]) if new else self.metrics_keys

    def _header(self) -> list[str]:
        if not self._size():
            return []
        with open(self.metrics_file_path, newline="") as f:
            return list(csv.DictReader(f).fieldnames or [])

    def _rewrite(self, keys: list[str]) -> None:
        # Replaced whole (atomic_write_text), where Lightning truncates the file and writes it again in place.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_file_path, text.getvalue())

    def _append(self, size: int | None) -> None:
        # A row cut short would misalign every row appended after it: a failed append cuts the file back to
        # `size`, where it ended (the rows stay in memory; the error ends the run).
        try:
            with open(self.metrics_file_path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                if not size:  # a new (or empty) file
                    writer.writeheader()
                writer.writerows(self.metrics)
        except OSError as e:
            self._cut_back(size)
            if e.filename is None:  # a failed write() names no file: this one was being written
                raise OSError(e.errno, e.strerror, self.metrics_file_path) from e
            raise

    def _size(self) -> int | None:
        path = self.metrics_file_path
        return os.path.getsize(path) if os.path.isfile(path) else None

    def _cut_back(self, size: int | None) -> None:
        if size is not None:
            os.truncate(self.metrics_file_path, size)
        elif os.path.isfile(self.metrics_file_path):  # created by the failed append
            os.remove(self.metrics_file_path)


class AppendingCSVLogger(Logger):
    """Lightning's CSVLogger (same arguments, directories and files) whose metrics.csv survives a restart in the
    same directory: rows are appended.

    Steps replayed after a resume appear twice; readers keep the last row of each step.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike[str],
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_logs_every_n_steps = flush_logs_every_n_steps
        self._experiment: AppendingWriter | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        """The version given, else the next free `version_<n>` under `root_dir` (as Lightning)."""
        if self._version is None:
            self._version = self._next_version()
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self.save_dir, self.name)

    @property
    def log_dir(self) -> str:
        """root_dir/version, or root_dir/version_<version> for an int; name "" and version "": save_dir itself."""
        version = self.version if isinstance(self.version, str) else f"version_{self.version}"
        return os.path.join(self.root_dir, version)

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        """The writer of metrics.csv and hparams.yaml (a no-op stand-in on ranks other than 0)."""
        if self._experiment is None:
            self._experiment = AppendingWriter(self.log_dir)
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None) -> None:
        params = vars(params) if isinstance(params, Namespace) else params
        self.experiment.log_hparams(params or {})

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Tensor | float], step: int | None = None) -> None:
        if self._prefix:
            metrics = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in metrics.items()}
        if step is None:
            step = len(self.experiment.metrics)
        self.experiment.log_metrics(metrics, step)
        if (step + 1) % self._flush_logs_every_n_steps == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        super().save()
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is None:  # nothing logged in this process (the main process of a spawned run)
            return
        self.save()

    def _next_version(self) -> int:
        if not os.path.isdir(self.root_dir):
            return 0
        names = [d.name for d in os.scandir(self.root_dir) if d.is_dir() and d.name.startswith("version_")]
        versions = [int(n.split("_")[1]) for n in names if n.split("_")[1].isdigit()]
        return max(versions, default=-1) + 1
