"""A CSV logger that appends: resuming a run in its own directory keeps the metrics already logged."""

from __future__ import annotations

import csv

from lightning_fabric.loggers.csv_logs import _ExperimentWriter
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning's writer deletes an existing metrics.csv here; a resumed or requeued run appends,
        # starting from the columns the file already has (new ones widen the header).
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])


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
