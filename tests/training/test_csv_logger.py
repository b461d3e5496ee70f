"""AppendingCSVLogger writes what Lightning's CSVLogger writes, and keeps it: a second fit appends, a new column
widens the header without losing a row, a failed write leaves metrics.csv as it was.

(A write cut short by a full disk in the middle of a row: tests/training/test_resilience.py.)
"""

from __future__ import annotations

import csv
import errno
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities import rank_zero_only
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from simclr.training.csv_logger import AppendingCSVLogger


class _Regression(pl.LightningModule):
    """A linear regression on fixed random data: 4 steps an epoch, a step and an epoch metric, a validation one."""

    def __init__(self, lr: float = 0.1, extra: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)
        self.data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = F.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        if self.hparams.extra:
            self.log("train/extra", 2 * loss)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", F.mse_loss(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=4)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=8)


def _fit(logger: pl.loggers.Logger, extra: bool = False) -> Path:
    """Three epochs of _Regression logged by `logger`; returns its metrics.csv."""
    trainer = pl.Trainer(
        max_epochs=3,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Regression(extra=extra))
    return Path(logger.log_dir, "metrics.csv")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("flush", "prefix"), [(1, ""), (5, "pre"), (100, "")])
def test_a_fit_writes_what_lightnings_csv_logger_writes(tmp_path: Path, flush: int, prefix: str) -> None:
    """Byte for byte: the columns and their order, the rows, the `epoch` and `step` columns, hparams.yaml."""
    args = {"name": "", "version": "", "prefix": prefix, "flush_logs_every_n_steps": flush}
    ours = _fit(AppendingCSVLogger(save_dir=tmp_path / "ours", **args))
    lightnings = _fit(CSVLogger(save_dir=tmp_path / "lightning", **args))
    assert ours == tmp_path / "ours" / "metrics.csv"
    assert ours.read_bytes() == lightnings.read_bytes()
    rows = _rows(ours)
    assert len(rows) == 3 * 4 + 3 + 3  # a row a step, one at the end of each epoch, one after each validation
    epoch, loss = (f"{prefix}-epoch", f"{prefix}-train/loss_step") if prefix else ("epoch", "train/loss_step")
    assert {epoch, "step", loss} <= set(rows[0]) and rows[0][loss]
    assert (ours.parent / "hparams.yaml").read_bytes() == (lightnings.parent / "hparams.yaml").read_bytes()
    assert "lr: 0.1" in (ours.parent / "hparams.yaml").read_text()


def test_a_second_fit_in_the_same_directory_appends_its_rows(tmp_path: Path) -> None:
    once = _fit(CSVLogger(save_dir=tmp_path / "lightning", name="", version="")).read_bytes()
    for _ in range(2):
        twice = _fit(AppendingCSVLogger(save_dir=tmp_path / "run", name="", version=""))
    header, *rows = once.splitlines(keepends=True)
    assert twice.read_bytes() == once + b"".join(rows)  # one header, then the rows of both fits


def test_a_new_column_after_a_resume_widens_the_header_and_keeps_every_row(tmp_path: Path) -> None:
    first = _rows(_fit(CSVLogger(save_dir=tmp_path / "lightning", name="", version="")))
    second = _rows(_fit(CSVLogger(save_dir=tmp_path / "lightning_extra", name="", version=""), extra=True))
    _fit(AppendingCSVLogger(save_dir=tmp_path / "run", name="", version=""))
    path = _fit(AppendingCSVLogger(save_dir=tmp_path / "run", name="", version=""), extra=True)
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == sorted([*first[0], "train/extra"]) == list(second[0])  # sorted, as Lightning sorts them
    assert len({len(line) for line in lines}) == 1
    assert _rows(path) == [{**row, "train/extra": ""} for row in first] + second
    assert sorted(os.listdir(path.parent)) == ["hparams.yaml", "metrics.csv"]  # no temporary file left behind


def test_rows_appended_under_an_existing_header_follow_its_order(tmp_path: Path) -> None:
    """A header Lightning did not write (not sorted): rows without a new column are appended in its order."""
    (tmp_path / "metrics.csv").write_text("step,loss\r\n0,4.0\r\n")
    logger = AppendingCSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"loss": 3.0}, step=1)
    logger.finalize("success")
    assert (tmp_path / "metrics.csv").read_bytes() == b"step,loss\r\n0,4.0\r\n1,3.0\r\n"


def test_an_empty_metrics_csv_gets_a_header(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").touch()  # left by a run killed before its first row
    logger = AppendingCSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"loss": 3.0}, step=0)
    logger.save()
    assert (tmp_path / "metrics.csv").read_bytes() == b"loss,step\r\n3.0,0\r\n"


def test_a_failed_header_rewrite_leaves_the_file_and_the_next_save_widens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = AppendingCSVLogger(save_dir=tmp_path, name="", version="")
    logger.log_metrics({"loss": 4.0}, step=0)
    logger.save()
    before = (tmp_path / "metrics.csv").read_bytes()

    def full(path: str, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    logger.log_metrics({"loss": 3.0, "top1": 0.5}, step=1)
    monkeypatch.setattr("simclr.training.csv_logger.atomic_write_text", full)
    with pytest.raises(OSError, match="No space left"):
        logger.save()
    monkeypatch.undo()
    assert (tmp_path / "metrics.csv").read_bytes() == before == b"loss,step\r\n4.0,0\r\n"
    logger.save()  # space again: the header is widened then, not taken as done
    assert (tmp_path / "metrics.csv").read_bytes() == b"loss,step,top1\r\n4.0,0,\r\n3.0,1,0.5\r\n"


def test_a_failed_first_save_removes_the_file_it_created_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writerows = csv.DictWriter.writerows

    def half_a_row(self: csv.DictWriter, rows: list[dict]) -> None:
        self.writer.writerow(["4."])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a failed write() reports it: no file named

    logger = AppendingCSVLogger(save_dir=tmp_path / "run", name="", version="")
    logger.log_metrics({"loss": 4.0}, step=0)
    monkeypatch.setattr(csv.DictWriter, "writerows", half_a_row)
    with pytest.raises(OSError) as failed:
        logger.save()
    monkeypatch.setattr(csv.DictWriter, "writerows", writerows)
    assert (failed.value.errno, failed.value.filename) == (errno.ENOSPC, str(tmp_path / "run" / "metrics.csv"))
    assert not (tmp_path / "run" / "metrics.csv").exists()
    logger.save()  # the row was kept
    assert (tmp_path / "run" / "metrics.csv").read_bytes() == b"loss,step\r\n4.0,0\r\n"


@pytest.mark.parametrize(
    ("name", "version"), [("", ""), ("exp", "v1"), ("exp", 2), (None, None), ("lightning_logs", None)]
)
def test_the_directories_are_lightnings(tmp_path: Path, name: str | None, version: int | str | None) -> None:
    """Where the checkpoints go (save_dir/name/version) and where the files are, as CSVLogger has them."""
    for existing in ("version_0", "version_3", "version_x", "other"):
        (tmp_path / (name or "") / existing).mkdir(parents=True)
    ours = AppendingCSVLogger(save_dir=tmp_path, name=name, version=version)
    lightnings = CSVLogger(save_dir=tmp_path, name=name, version=version)
    for attribute in ("save_dir", "name", "version", "root_dir", "log_dir"):
        assert getattr(ours, attribute) == getattr(lightnings, attribute), attribute
    ours.log_metrics({"loss": 1.0}, step=0)
    ours.finalize("success")
    assert Path(ours.log_dir, "metrics.csv").is_file()


def test_ranks_other_than_zero_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = AppendingCSVLogger(save_dir=tmp_path / "run", name="", version="")
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    logger.finalize("success")
    assert not (tmp_path / "run").exists()
