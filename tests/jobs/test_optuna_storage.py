"""Where studies live: an SQLite database or an Optuna journal file, continued by the same command, shared by
two sweeps started at once. Through the real script (`train_ssl.py -m`), one-epoch tiny trials."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from simclr.jobs.optuna_study import open_storage
from tests.helpers import TINY_SSL, entry_point, entry_point_env

TINY_TRIAL = [o for o in TINY_SSL if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=1"]
COMPLETE = optuna.trial.TrialState.COMPLETE


def _sweep(cifar_root: Path, sweep: Path, storage: str, *overrides: str) -> subprocess.Popen:
    """A 2-trial study of the preset, started (not waited for)."""
    args = [
        "-m",
        "sweep=temperature_batch",
        "data.batch_size=choice(16, 32)",
        *TINY_TRIAL,
        f"data.root={cifar_root}",
        f"hydra.sweep.dir={sweep}",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.n_trials=2",
        *overrides,
    ]
    return subprocess.Popen(
        entry_point("train_ssl.py", *args),
        cwd=sweep.parent,
        env=entry_point_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def _storage(address: str) -> optuna.storages.BaseStorage | str:
    if address.startswith("sqlite:"):
        return address
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(address))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_sweeps_at_once_share_one_study(cifar_root: Path, tmp_path: Path, kind: str) -> None:
    """Two commands against one storage, started together (different sampler seeds, as docs/sweeps.md says): one
    study of four trials numbered 0-3, each number once, every trial completed."""
    address = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else str(tmp_path / "study.journal")
    first = _sweep(cifar_root, tmp_path / "a", address)
    second = _sweep(cifar_root, tmp_path / "b", address, "hydra.sweeper.sampler.seed=1")
    _finish(first), _finish(second)
    trials = optuna.load_study(study_name="temperature_batch", storage=_storage(address)).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == COMPLETE for t in trials)
    assert (tmp_path / "a" / "summary.md").is_file() and (tmp_path / "b" / "summary.md").is_file()


def test_an_interrupted_journal_study_continues_with_the_same_command(cifar_root: Path, tmp_path: Path) -> None:
    """A sweep killed in its first trial leaves that trial RUNNING in the journal; the same command again adds
    two new trials, at points of their own (the sampler is seeded with seed + stored trials)."""
    address = str(tmp_path / "study.journal")
    killed = _sweep(cifar_root, tmp_path / "a", address)
    storage = _storage(address)
    for _ in range(600):  # wait until the first trial is drawn, then kill the sweep mid-trial
        try:
            if optuna.load_study(study_name="temperature_batch", storage=storage).trials:
                break
        except KeyError:  # no study in the journal yet
            pass
        time.sleep(0.1)
    killed.kill()
    killed.communicate()
    output = _finish(_sweep(cifar_root, tmp_path / "b", address))
    assert "derived: sampler seed 1 (hydra.sweeper.sampler.seed + 1 stored trials)" in output
    trials = optuna.load_study(study_name="temperature_batch", storage=_storage(address)).trials
    assert [(t.number, t.state) for t in trials] == [(0, optuna.trial.TrialState.RUNNING), (1, COMPLETE), (2, COMPLETE)]
    assert trials[1].params != trials[0].params
    # docs/sweeps.md's way to mark the interrupted trial failed, when no command runs on the study:
    study = optuna.load_study(study_name="temperature_batch", storage=_storage(address))
    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, COMPLETE, COMPLETE]


def _open(url: str, results: multiprocessing.Queue) -> None:
    try:
        open_storage(url)
        results.put("opened")
    except Exception as e:  # noqa: BLE001  (the test reports what each process met)
        results.put(type(e).__name__)


def test_a_new_database_opened_by_several_processes_at_once(tmp_path: Path) -> None:
    """Optuna creates its tables when it first opens a database; six processes doing so at once on a new SQLite
    file met IntegrityError and OperationalError in half the opens (measured: 15 of 30 over five files).
    open_storage opens again once the first has made them: every process gets the storage."""
    context = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'study{round_}.db'}"
        results = context.Queue()
        processes = [context.Process(target=_open, args=(url, results)) for _ in range(6)]
        for p in processes:
            p.start()
        for p in processes:
            p.join(timeout=120)
        assert [results.get(timeout=5) for _ in processes] == ["opened"] * 6
