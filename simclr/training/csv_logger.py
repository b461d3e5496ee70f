"""A CSV logger that appends: resuming a run in its own directory keeps the metrics already logged.

A write that fails (a full disk) leaves metrics.csv as it was before that write: Lightning's writer
appends rows in place, and rewrites the whole file in place when a column is added.
"""

from __future__ import annotations

import csv
import io
import os

from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from simclr.storage import atomic_write_text


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning's writer deletes an existing metrics.csv here; a resumed or requeued run appends,
        # starting from the columns the file already has (new ones widen the header).
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])

    def save(self) -> None:
        # A row cut short would misalign every row a resumed run appends after it: a failed save cuts the
        # file back to where it ended (the rows stay in memory; the error ends the run).
        self._whole = self._size()
        try:
            super().save()
        except OSError as e:
            self._cut_back()
            if e.filename is None:  # a failed write() names no file: this one was being written
                raise OSError(e.errno, e.strerror, self.metrics_file_path) from e
            raise

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Replaces the file whole (atomic_write_text), where Lightning truncates it and writes it again.
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_file_path, text.getvalue())
        self._whole = self._size()

    def _size(self) -> int | None:
        path = self.metrics_file_path
        return os.path.getsize(path) if os.path.isfile(path) else None

    def _cut_back(self) -> None:
        path = self.metrics_file_path
        if self._whole is not None:
            os.truncate(path, self._whole)
        elif os.path.isfile(path):  # created by the failed save
            os.remove(path)


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose metrics.csv survives a restart in the same directory (rows are appended).

    Steps replayed after a resume appear twice; readers keep the last row of each step.
    """

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
