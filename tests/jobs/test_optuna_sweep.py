"""Optuna through Hydra (this project's sweeper, hydra_plugins/simclr_optuna_sweeper): a study through the real
script, failed trials, a study stored in SQLite and continued by the same command, the summary's best row,
refusals. Pruning, two objectives, journal storage and concurrent sweeps: test_optuna_pruning.py and
test_optuna_storage.py.

What the sweeper does with a job's return value (None: a failed trial, and the study goes on; no completed
trial: one line and exit status 1) is shown here through the public path only, `train_ssl.py -m`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from simclr.errors import ConfigError
from simclr.jobs.cli import CheckConfig, run_job
from simclr.jobs.optuna_study import check_optuna_sweep
from simclr.jobs.sweep import mark_best, optuna_note, summarize
from simclr.jobs.sweep_plot import _x_key, plot
from tests.helpers import TINY_SSL, compose_config, error_lines, run_entry_point

# ---- through the real script -------------------------------------------------------------------------

# The tiny run, one epoch; the studies search (or fix) data.batch_size themselves.
TINY_TRIAL = [o for o in TINY_SSL if not o.startswith("data.batch_size=")] + ["trainer.max_epochs=1"]
BATCHES = "data.batch_size=choice(16,32,4096)"  # 4096 > the 200 training images: that trial fails


def _multirun(cifar_root: Path, sweep: Path, *overrides: str):  # noqa: ANN202
    args = ["-m", *TINY_TRIAL, f"data.root={cifar_root}", f"hydra.sweep.dir={sweep}", *overrides]
    return run_entry_point("train_ssl.py", *args, cwd=sweep.parent)


@pytest.fixture(scope="module")
def study(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Any, Any]:
    """The preset's study stored in SQLite, run by two commands: 3 trials, then 1 more by the same command (its
    sampler seeded anew from the stored trials). Returns (base dir, storage URL, first, second)."""
    base = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{base / 'study.db'}"
    stored = ("sweep=temperature_batch", BATCHES, f"hydra.sweeper.storage={url}")
    first = _multirun(cifar_root, base / "first", *stored, "hydra.sweeper.n_trials=3")
    second = _multirun(cifar_root, base / "second", *stored, "hydra.sweeper.n_trials=1")
    return base, url, first, second


def _rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_three_trial_study_with_a_failing_trial(study: tuple) -> None:
    """The preset, its batch choices replaced on the command line: with the preset's sampler seed the
    trials draw batch sizes 16, 4096 (more than the 200 images: fails) and 32, so the failure comes in
    the middle and the study still runs its three trials."""
    base, _, result, _ = study
    sweep = base / "first"
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # like a grid: a failed job makes the exit status 1
    assert "1 of 3 jobs failed" in result.stderr
    failed_trial = next(n for n in range(3) if f"trial {n} fail" in output)  # told to Optuna as FAIL
    assert "Traceback" not in result.stderr
    assert sorted(d.name for d in sweep.iterdir() if d.is_dir()) == ["0", "1", "2"]
    for name in ("summary.md", "summary.csv", "summary.png", "optimization_results.yaml"):
        assert (sweep / name).is_file(), name
    hydra = yaml.safe_load((sweep / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["sweeper"]["direction"] == "maximize" and "optuna" in hydra["sweeper"]["_target_"]

    rows = _rows(sweep)
    batch = {r["job"]: yaml.safe_load((sweep / r["job"] / ".hydra" / "overrides.yaml").read_text()) for r in rows}
    for r in rows:  # the trial's parameters, as drawn, in each job's overrides and in the table
        drawn = dict(o.split("=", 1) for o in batch[r["job"]])
        assert {"loss.temperature", "data.batch_size"} <= set(drawn)
        assert f"data.batch_size={drawn['data.batch_size']}" in r["overrides"] and "loss.temperature=" in r["overrides"]
        status = json.loads((sweep / r["job"] / "status.json").read_text())
        if drawn["data.batch_size"] == "4096":
            assert r["job"] == str(failed_trial)
            assert r["status"] == status["status"] == "failed" and "data.batch_size=4096 exceeds" in r["error"]
            assert r["objective"] == "" and r["best"] == "False"
        else:
            assert r["status"] == status["status"] == "completed"
            assert r["objective"] == r["val_knn_top1"] and r["selection"] == "val"  # validation, never test
            run = json.loads((sweep / r["job"] / "results.json").read_text())
            assert run["objective_metric"] == "val/knn_top1" and float(r["test_knn_top1"]) > 0.3  # chance: 0.1
    statuses = sorted(r["status"] for r in rows)
    assert statuses == ["completed", "completed", "failed"], statuses

    # Exactly one row marked best: the highest objective (the first of equals, as Optuna), and Optuna's own.
    best = [r for r in rows if r["best"] == "True"]
    assert len(best) == 1
    objectives = [float(r["objective"]) for r in rows if r["objective"]]
    assert float(best[0]["objective"]) == max(objectives)
    assert best[0] is next(r for r in rows if r["objective"] and float(r["objective"]) == max(objectives))
    study = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert math.isclose(study["best_value"], float(best[0]["objective"]), rel_tol=1e-6)
    drawn = dict(o.split("=", 1) for o in batch[best[0]["job"]])
    assert {k: float(v) for k, v in study["best_params"].items()} == {k: float(drawn[k]) for k in study["best_params"]}
    md = (sweep / "summary.md").read_text()
    assert f"job {best[0]['job']}, the row marked ★." in md
    assert md.splitlines()[2 + int(best[0]["job"])].startswith(f"| {best[0]['job']} | ★ |")


def test_command_line_study_whose_every_trial_fails(cifar_root: Path, tmp_path: Path) -> None:
    """hydra/sweeper=optuna with the search space on the command line (any key: here optimizer.lr) and no
    direction given (maximised); every trial fails, so Optuna has no best trial: one line, the summary."""
    sweep = tmp_path / "sweep"
    result = _multirun(
        cifar_root,
        sweep,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=1",
        "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
        "data.batch_size=4096",
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    errors = error_lines(result.stderr)
    assert errors == [
        f"error: no trial of the Optuna study completed (2 failed, 0 pruned); see {sweep}/summary.md, and why "
        f"each ended in its {sweep}/<trial>/status.json"
    ]
    assert not (sweep / "optimization_results.yaml").exists()
    rows = _rows(sweep)
    assert [r["status"] for r in rows] == ["failed", "failed"] and all(r["best"] == "False" for r in rows)
    assert all(r["overrides"].startswith("optimizer.lr=") for r in rows)  # the drawn lr, nothing fixed
    hydra = yaml.safe_load((sweep / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]
    assert hydra["sweeper"]["direction"] == "maximize" and hydra["sweeper"]["trial"] == 0
    assert "hydra.sweeper.trial=0" in hydra["overrides"]["hydra"]  # the sweeper's, not the task's overrides


def test_a_study_stored_in_sqlite_continues_in_the_next_invocation(study: tuple) -> None:
    """hydra.sweeper.storage: the second command, the first one again, adds a new point to the first's three
    trials in one study in the file (its sampler seeded with seed + stored trials); it is that command's job 0,
    and its optimization_results.yaml names the best of all four."""
    base, url, _, second = study
    assert second.returncode == 0, second.stderr[-3000:]
    assert "derived: sampler seed 3 (hydra.sweeper.sampler.seed + 3 stored trials)" in second.stdout + second.stderr
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["temperature_batch"]
    stored = optuna.load_study(study_name="temperature_batch", storage=url)
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert [(t.number, t.state) for t in stored.trials] == [(0, complete), (1, fail), (2, complete), (3, complete)]
    overrides = yaml.safe_load((base / "second" / "0" / ".hydra" / "overrides.yaml").read_text())
    drawn = dict(o.split("=", 1) for o in overrides)
    fourth = {k: float(v) for k, v in stored.trials[3].params.items()}
    assert {k: float(drawn[k]) for k in ("loss.temperature", "data.batch_size")} == fourth
    assert all(fourth != {k: float(v) for k, v in t.params.items()} for t in stored.trials[:3])  # a new point
    results = yaml.safe_load((base / "second" / "optimization_results.yaml").read_text())
    best = max(t.value for t in stored.trials if t.state == complete)
    assert results["best_value"] == stored.best_value == best


# ---- the checks before a study --------------------------------------------------------------------------


def _hydra_config(overrides: list[str]) -> DictConfig:
    return compose_config("train_ssl", overrides, hydra=True)


def test_the_study_maximises_unless_told_otherwise() -> None:
    """The sweeper's default direction is the script's (maximize); nothing is rewritten after composition."""
    cfg = _hydra_config(["hydra/sweeper=optuna"])
    check_optuna_sweep(cfg)
    assert cfg.hydra.sweeper.direction == "maximize" and list(cfg.hydra.overrides.hydra) == ["hydra/sweeper=optuna"]
    check_optuna_sweep(_hydra_config(["sweep=temperature_batch", "hydra.sweeper.directions=[maximize,minimize]"]))
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.direction=minimize is not a study of the script's"):
        check_optuna_sweep(_hydra_config(["hydra/sweeper=optuna", "hydra.sweeper.direction=minimize"]))
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.directions=maximize,maximize is not a study"):
        check_optuna_sweep(_hydra_config(["hydra/sweeper=optuna", "hydra.sweeper.directions=[maximize,maximize]"]))
    with pytest.raises(ConfigError, match=r"^data.val_size=0 leaves no validation metric"):
        check_optuna_sweep(_hydra_config(["sweep=temperature_batch", "data.val_size=0"]))


def test_a_stored_study_is_named_and_its_folder_exists(tmp_path: Path) -> None:
    """Without study_name each command would start a new study in the file; a missing SQLite or journal folder
    would end in a traceback from sqlite3 or the journal's lock."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(ConfigError, match=r"^hydra.sweeper.storage=sqlite:///\S+ needs hydra.sweeper.study_name"):
        check_optuna_sweep(_hydra_config(["hydra/sweeper=optuna", f"hydra.sweeper.storage={url}"]))
    for missing in (
        f"sqlite:///{tmp_path / 'no_such_folder' / 'study.db'}",
        str(tmp_path / "no_such_folder" / "j.log"),
    ):
        with pytest.raises(ConfigError, match=r"the folder \S+no_such_folder does not exist"):
            check_optuna_sweep(_hydra_config(["sweep=temperature_batch", f"hydra.sweeper.storage={missing}"]))
    check_optuna_sweep(_hydra_config(["sweep=temperature_batch", f"hydra.sweeper.storage={tmp_path / 'j.log'}"]))
    # A database whose driver is not installed (psycopg2, pymysql: not dependencies of this project): one line.
    for unreachable, cause in (
        ("postgresql+psycopg2://simclr@127.0.0.1:1/optuna", "ImportError"),
        ("mysql+pymysql://simclr@127.0.0.1:1/optuna", "ImportError"),
    ):
        with pytest.raises(ConfigError, match=rf"^hydra.sweeper.storage=\S+ cannot be opened \({cause}"):
            check_optuna_sweep(_hydra_config(["sweep=temperature_batch", f"hydra.sweeper.storage={unreachable}"]))


def test_a_trial_that_draws_no_validation_split_fails_alone(tmp_path: Path) -> None:
    """data.val_size among the searched keys: the trial that draws 0 fails before it trains, with the reason,
    and returns None (a FAIL trial for Optuna)."""
    cfg = _hydra_config(["hydra/sweeper=optuna", "data.val_size=0", f"paths.output_dir={tmp_path}"])
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
    held = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)  # as in a job of the study
    ran: list[int] = []
    try:
        assert run_job(lambda: ran.append(1), cfg) is None
    finally:
        HydraConfig.instance().cfg = held
    status = json.loads((tmp_path / "status.json").read_text())
    assert ran == [] and status["status"] == "failed"
    assert status["error"].startswith("data.val_size=0 leaves no validation metric for the Optuna sweeper")


def test_a_study_without_a_validation_split_is_refused_before_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    """CheckConfig.on_multirun_start, which Hydra calls before the sweeper draws a trial: one line, exit 2."""
    with pytest.raises(SystemExit) as caught:
        CheckConfig().on_multirun_start(_hydra_config(["sweep=temperature_batch", "data.val_size=0"]))
    assert caught.value.code == 2
    assert capsys.readouterr().err.startswith(
        "error: data.val_size=0 leaves no validation metric for the Optuna sweeper"
    )


def test_the_preset_needs_multirun(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _hydra_config(["sweep=temperature_batch"])
    assert "sweep" not in cfg  # a _global_ preset: it sets hydra.sweeper only, no key of the schema
    with pytest.raises(SystemExit) as caught:
        CheckConfig().on_run_start(cfg)
    assert caught.value.code == 2
    assert (
        capsys.readouterr().err
        == "error: sweep=temperature_batch is a search over many runs; run it with -m (multirun)\n"
    )


# ---- the summary ------------------------------------------------------------------------------------------


def _row(job: str, objective: float | None, status: str = "completed", **params: str) -> dict[str, Any]:
    return {
        "job": job,
        "status": status,
        "objective": objective,
        "params": params,
        "val_knn_top1": objective,
        "test_knn_top1": None,
        "probe_val_top1": None,
        "probe_test_top1": None,
    }


def test_mark_best_takes_the_highest_objective_of_the_completed_jobs() -> None:
    rows = [
        _row("0", 0.5),
        _row("1", 0.9, status="failed"),  # figures of a job that failed late are no candidate
        _row("2", None),  # data.val_size=0: no objective
        _row("3", float("nan")),
        _row("4", 0.7),
        _row("5", 0.7),  # equal: the first keeps it, as Optuna's best trial
    ]
    assert mark_best(rows) is rows[4]
    assert [r["best"] for r in rows] == [False, False, False, False, True, False]
    nothing = [_row("0", None), _row("1", 0.8, status="failed")]
    assert mark_best(nothing) is None and not any(r["best"] for r in nothing)


def test_optuna_note_cross_checks_the_best_row() -> None:
    rows = [_row("0", 0.6, **{"loss.temperature": "0.2588170214937917"}), _row("1", 0.8, **{"loss.temperature": "0.5"})]
    mark_best(rows)
    same = optuna_note(rows, {"best_params": {"loss.temperature": 0.5}, "best_value": 0.8})
    head = "Optuna's best trial (optimization_results.yaml): "
    assert same == head + "loss.temperature=0.5, value 0.8000: job 1, the row marked ★."
    other = optuna_note(rows, {"best_params": {"loss.temperature": 0.2588170214937917}, "best_value": 0.9})
    assert "loss.temperature=0.2588" in other and "job 0, NOT the row marked ★ (job 1)" in other
    assert "no job of this directory" in optuna_note(rows, {"best_params": {"loss.temperature": 0.3}, "best_value": 1})


def test_summary_of_a_study_marks_the_best_and_plots_its_samples(tmp_path: Path) -> None:
    """A directory laid out as the Optuna sweeper leaves it (trial dirs, optimization_results.yaml)."""
    drawn = [("0.0712", "256", 0.41), ("0.2588170214937917", "128", 0.47), ("0.9", "512", None), ("0.3", "128", 0.45)]
    for job, (temperature, batch, top1) in enumerate(drawn):
        out = tmp_path / str(job)
        (out / ".hydra").mkdir(parents=True)
        overrides = [f"loss.temperature={temperature}", f"data.batch_size={batch}", "trainer=cpu"]
        (out / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        status = "completed" if top1 is not None else "failed"
        (out / "status.json").write_text(json.dumps({"status": status, "error": None if top1 else "too big"}))
        if top1 is not None:
            (out / "metrics.csv").write_text(f"epoch,val/knn_top1,test/knn_top1\n0,{top1},0.3\n")
    results = {"name": "optuna", "best_params": {"loss.temperature": 0.2588170214937917, "data.batch_size": 128}}
    (tmp_path / "optimization_results.yaml").write_text(yaml.safe_dump({**results, "best_value": 0.47}))
    rows = summarize(tmp_path)
    assert [r["best"] for r in rows] == [False, True, False, False]
    assert rows[1]["overrides"] == "loss.temperature=0.2588 data.batch_size=128"  # the sample, shortened
    md = (tmp_path / "summary.md").read_text().splitlines()
    assert md[3].startswith("| 1 | ★ | loss.temperature=0.2588 data.batch_size=128 | completed |")
    assert md[-1].endswith("job 1, the row marked ★.") and md[-2] == ""
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    # Without loss.temperature among the parameters the plot takes the next numeric one (or the job number).
    lr_rows = [_row("0", 0.4, **{"optimizer.lr": "0.001"}), _row("1", 0.5, **{"optimizer.lr": "0.01"})]
    mark_best(lr_rows)
    assert _x_key(lr_rows, "loss.temperature", "data.batch_size") == "optimizer.lr"
    assert plot(lr_rows, tmp_path / "lr.png", samples=True) == "val_knn_top1"
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    # Nothing numeric varies (a grid of optimizers): the jobs are plotted against their number.
    by_name = [_row("0", 0.4, optimizer="adam"), _row("1", 0.5, optimizer="sgd")]
    assert _x_key(by_name, "loss.temperature", "data.batch_size") is None
    assert plot(by_name, tmp_path / "jobs.png") == "val_knn_top1"
    assert (tmp_path / "jobs.png").read_bytes()[:4] == b"\x89PNG"
