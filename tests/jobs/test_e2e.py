"""The scripts as a user runs them: pretraining runs started together, a probe of one, its results; and a config
refused before the run starts: one line, exit status 2, nothing written.

The other tests call the jobs in-process (`train_ssl(cfg)`, `train_linear(cfg)`); these are what only a new
process shows: the Hydra command line, the run directories it makes, stdout and stderr, the exit status.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import TINY_PROBE, TINY_SSL, one_error_line, run_entry_point, start_entry_point


def test_runs_started_together_get_their_own_directories_and_a_probe_reads_one(
    cifar_root: Path, tmp_path: Path
) -> None:
    """Two train_ssl.py with the default run directory, started at once, never share it; train_linear.py probes
    one's last checkpoint and writes its results beside that run."""
    runs = [
        start_entry_point("train_ssl.py", *TINY_SSL, f"data.root={cifar_root}", "trainer.max_epochs=1", cwd=tmp_path)
        for _ in range(2)
    ]
    for proc in runs:
        stderr = proc.communicate(timeout=300)[1]
        assert proc.returncode == 0, stderr[-3000:]
    dirs = sorted(tmp_path.glob("runs/ssl/*/*"))
    assert len(dirs) == 2
    for run in dirs:
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "metrics.csv").is_file()
        assert json.loads((run / "status.json").read_text())["status"] == "completed"

    run = dirs[0]
    ckpt = run / "checkpoints" / "last.ckpt"
    args = [*TINY_PROBE, f"data.root={cifar_root}", f"ckpt={ckpt}", "trainer.max_epochs=3"]
    probe = run_entry_point("train_linear.py", *args, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-3000:]
    summary = [line for line in probe.stdout.splitlines() if line.startswith("linear probe: test top-1")]
    assert len(summary) == 1
    results_files = list((run / "linear").glob("last_*/results.json"))
    assert len(results_files) == 1  # next to the pretraining run
    results = json.loads(results_files[0].read_text())
    # Classes of the generated data differ in mean colour: chance is 10%, a working pipeline is far above.
    assert results["test_top1"] > 0.3 and results["ckpt"] == str(ckpt.resolve())
    assert f"{100 * results['test_top1']:.2f}%" in summary[0]


# (script, overrides, the start of its one line): a config refused while Hydra composes it (simclr.jobs.cli's
# run_script prints the line), and one refused by the rules in the CheckConfig callback Hydra calls before the
# run directory exists (its SystemExit passes Hydra's callback wrapper). Both are refused before anything is
# written. Every value each place refuses is tested in-process (tests/config/test_schema.py); a refusal by the job,
# after the run directory exists: tests/training/test_resilience.py (a damaged checkpoint, reported once).
REFUSALS = {
    "while Hydra composes": (
        "train_ssl.py",
        ["optimizer.lrr=1"],
        "optimizer.lrr is not a key of optimizer; did you mean optimizer.lr?",
    ),
    "by the rules, before the run starts": ("train_ssl.py", ["knn.k=0"], "knn.k=0 must be an integer >= 1"),
    # Hydra would raise a ValueError building the defaults list (simclr/jobs/group_overrides.py).
    "a null group, before Hydra composes": ("train_ssl.py", ["model=null"], "model=null is not an option of model"),
    # The logger's keys and types come from its class's signature (simclr/config/logger_schema.py).
    "a logger argument of the wrong type, by the rules": (
        "train_ssl.py",
        ["logger=wandb", "logger.offline=maybe"],
        "logger.offline=maybe must be true or false",
    ),
}


@pytest.fixture(scope="module")
def refusals(cifar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case of REFUSALS run once, at the same time: {case: (working directory, process)}."""

    def run(case: str) -> tuple[str, tuple]:
        script, overrides, _ = REFUSALS[case]
        cwd = tmp_path_factory.mktemp("refused")
        args = [*TINY_SSL, f"data.root={cifar_root}", "hydra.run.dir=run", *overrides]
        return case, (cwd, run_entry_point(script, *args, cwd=cwd))

    with ThreadPoolExecutor(max_workers=len(REFUSALS)) as pool:
        return dict(pool.map(run, REFUSALS))


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refusal_is_one_line_and_exit_status_2(case: str, refusals: dict[str, tuple]) -> None:
    cwd, proc = refusals[case]
    script, _, line = REFUSALS[case]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert one_error_line(proc.stderr).startswith(f"error: {line}"), proc.stderr[-3000:]
    assert list(cwd.iterdir()) == [], f"{script} wrote {sorted(str(p) for p in cwd.rglob('*'))}"


def test_a_key_of_a_group_the_command_does_not_select_is_one_line(tmp_path: Path) -> None:
    """train_linear.py's model is null (the checkpoint names it): a key of it alone would reach an AssertionError
    inside OmegaConf; it is refused with the group to select instead."""
    proc = run_entry_point("train_linear.py", "model.width=8", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error_line(proc.stderr)
    assert line.startswith("error: model.width=8 sets a key of model, which this command does not select"), line
    assert "model=resnet18" in line and list(tmp_path.iterdir()) == []
