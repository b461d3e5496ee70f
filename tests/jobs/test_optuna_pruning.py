"""Pruning and two objectives through the real script (`train_ssl.py -m`), and every refusal before a study.

A losing trial is made deterministic by the study it joins: the stored study already holds a trial with an
unbeatable record (validation top-1 1.0 at every epoch), so the median pruner, active after one completed
trial, stops a new trial at its first report whatever it scored.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from simclr.errors import ConfigError
from simclr.jobs.optuna_study import check_optuna_sweep
from tests.helpers import TINY_SSL, compose_config, one_error_line, run_entry_point

TINY_TRIAL = [o for o in TINY_SSL if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=3"]
TEMPERATURE = "loss.temperature=tag(log, interval(0.05, 1.0))"
PRUNE_AFTER_ONE = ("hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args.n_startup_trials=1")
PRUNED = optuna.trial.TrialState.PRUNED


def _multirun(cifar_root: Path, sweep: Path, *overrides: str, timeout: float = 300):  # noqa: ANN202
    args = ["-m", *TINY_TRIAL, f"data.root={cifar_root}", f"hydra.sweep.dir={sweep}", TEMPERATURE, *overrides]
    return run_entry_point("train_ssl.py", *args, cwd=sweep.parent, timeout=timeout)


def _study_with_a_record(url: str, name: str = "record") -> optuna.Study:
    """A stored study holding one completed trial that scored 1.0 at epochs 1-3."""
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    space = {"loss.temperature": optuna.distributions.FloatDistribution(0.05, 1.0, log=True)}
    record = optuna.trial.create_trial(
        params={"loss.temperature": 0.5}, distributions=space, value=1.0, intermediate_values={1: 1.0, 2: 1.0, 3: 1.0}
    )
    study.add_trial(record)
    return study


def _check_pruned_job(job: Path) -> None:
    """What a pruned trial leaves: status.json pruned at epoch 1, its checkpoint, its metrics, no probe."""
    status = json.loads((job / "status.json").read_text())
    assert status["status"] == "pruned" and status["epoch"] == 1 and status["error"] is None
    assert (job / "checkpoints" / "last.ckpt").is_file()
    with open(job / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["epoch"]) for r in rows if r.get("train/loss_epoch")} == {0}  # one epoch trained, not three
    assert any(r.get("val/knn_top1") for r in rows)
    assert json.loads((job / "results.json").read_text())["pruned_at_epoch"] == 1


def test_a_losing_trial_is_pruned_at_its_first_report(cifar_root: Path, tmp_path: Path) -> None:
    """Trials in the sweeper's process: the trial reports val/knn_top1 after epoch 1, is below the median, and
    stops there; exit status 0, PRUNED in the study with that report, the summary lists it at its epoch."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _study_with_a_record(url)
    sweep = tmp_path / "sweep"
    stored = (f"hydra.sweeper.storage={url}", "hydra.sweeper.study_name=record", "hydra.sweeper.n_trials=1")
    result = _multirun(cifar_root, sweep, "hydra/sweeper=optuna", *stored, *PRUNE_AFTER_ONE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 1 pruned at epoch 1" in result.stdout + result.stderr
    _check_pruned_job(sweep / "0")
    trial = optuna.load_study(study_name="record", storage=url).trials[1]
    assert trial.state == PRUNED and list(trial.intermediate_values) == [1]
    assert 0.1 < trial.intermediate_values[1] < 1.0 and trial.value == trial.intermediate_values[1]
    with open(sweep / "summary.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "pruned" and row["epochs"] == "1" and row["best"] == "False"
    assert float(row["val_knn_top1"]) == pytest.approx(trial.intermediate_values[1], abs=1e-6)
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    # The record of the whole study is Optuna's best; no job of this directory ran it.
    assert "no job of this directory" in (sweep / "summary.md").read_text()


def test_trials_in_other_processes_find_their_study_through_the_storage(cifar_root: Path, tmp_path: Path) -> None:
    """submitit's local launcher, two trials at once (n_jobs=2): each job opens the study from the journal file,
    reports, and is pruned; the sweeper tells the study so."""
    journal = tmp_path / "study.journal"
    _study_with_a_record(optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))))
    sweep = tmp_path / "sweep"
    stored = (f"hydra.sweeper.storage={journal}", "hydra.sweeper.study_name=record")
    launcher = ("hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2")
    result = _multirun(cifar_root, sweep, "hydra/sweeper=optuna", *stored, *launcher, *PRUNE_AFTER_ONE)
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        _check_pruned_job(sweep / job)
        assert (sweep / ".submitit").is_dir()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    trials = optuna.load_study(study_name="record", storage=storage).trials
    assert [(t.number, t.state) for t in trials[1:]] == [(1, PRUNED), (2, PRUNED)]


def test_two_objectives_mark_the_pareto_front(cifar_root: Path, tmp_path: Path) -> None:
    """directions=[maximize,minimize]: each trial is told (validation top-1, wall time); the summary marks the
    trials no other beats on both, which are Optuna's best_trials."""
    sweep = tmp_path / "sweep"
    result = _multirun(
        cifar_root,
        sweep,
        "hydra/sweeper=optuna",
        "hydra.sweeper.directions=[maximize,minimize]",
        "hydra.sweeper.n_trials=3",
        "data.batch_size=choice(16, 32)",
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    front = sorted(s["number"] for s in results["solutions"])
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["job"]) for r in rows if r["pareto"] == "True"] == front and front
    for solution in results["solutions"]:
        row = rows[solution["number"]]
        assert solution["values"] == pytest.approx([float(row["objective"]), float(row["wall_s"])])
    md = (sweep / "summary.md").read_text()
    assert "| pareto |" in md and md.count("| front |") == len(front)
    assert "Pareto solutions" in md


# ---- refused before any trial starts -----------------------------------------------------------------


def _hydra_config(overrides: list[str]) -> DictConfig:
    return compose_config("train_ssl", overrides, hydra=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.limit_val_batches=0"],
            "hydra.sweeper.pruner=median needs the validation kNN monitor, which trainer.limit_val_batches=0",
        ),
        (
            ["hydra/launcher=submitit_local"],
            "hydra.sweeper.pruner=median with trials run in other processes (LocalLauncher) needs a study they can",
        ),
        (["hydra.sweeper.directions=[maximize,minimize]"], "hydra.sweeper.pruner=median needs one objective"),
        (
            ["hydra.sweeper.pruner_args.min_resource=2"],
            "hydra.sweeper.pruner_args.min_resource=2 does not fit hydra.sweeper.pruner=median",
        ),
        (["data.val_size=0"], "data.val_size=0 leaves no validation metric for the Optuna sweeper"),
    ],
    ids=["no monitor", "in-memory study, other processes", "two objectives", "wrong argument", "no validation"],
)
def test_a_pruner_that_could_not_work_is_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        check_optuna_sweep(_hydra_config(["sweep=temperature_batch", "hydra.sweeper.pruner=median", *overrides]))
    assert str(refused.value).startswith(message)


def test_the_refusal_is_one_line_and_exit_status_2(cifar_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = _multirun(cifar_root, sweep, "hydra/sweeper=optuna", "hydra/launcher=submitit_local", *PRUNE_AFTER_ONE)
    assert result.returncode == 2
    assert one_error_line(result.stderr).startswith("error: hydra.sweeper.pruner=median with trials run in other")
    assert not sweep.exists()  # no trial started


def test_each_pruner_is_optunas_own_class() -> None:
    """none, median, successive_halving, hyperband: Optuna's classes with the arguments given."""
    from simclr.jobs.optuna_study import build_pruner

    kinds = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }
    for name, cls in kinds.items():
        cfg = _hydra_config(["sweep=temperature_batch", f"hydra.sweeper.pruner={name}"])
        assert type(build_pruner(cfg.hydra.sweeper)) is cls
    cfg = _hydra_config(["sweep=temperature_batch", "hydra.sweeper.pruner=successive_halving"])
    cfg.hydra.sweeper.pruner_args.min_resource = 2
    cfg.hydra.sweeper.pruner_args.reduction_factor = 3
    pruner = build_pruner(cfg.hydra.sweeper)
    assert (pruner._min_resource, pruner._reduction_factor) == (2, 3)  # noqa: SLF001  (what Optuna was given)
    with pytest.raises((HydraException, OmegaConfBaseException)):  # the schema's Enum: one line from the script
        _hydra_config(["sweep=temperature_batch", "hydra.sweeper.pruner=unknown"])
