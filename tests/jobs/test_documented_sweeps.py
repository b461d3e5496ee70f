"""Every sweep command (`python train_ssl.py -m ...`) written in README.md and docs/*.md runs, on tiny data, to
its summary: two jobs (a grid cut to two points, an Optuna study to two trials), each the tiny model for one
epoch. tests/config/test_docs_commands.py composes every command; this runs the sweeps, so that a documented
sweep cannot silently stop producing its summary (as the README's Optuna command once did: no objective).

The tiny settings replace the documented values of the same keys (model size, epochs, batch, data); the rest
of each command, its sweeper, pruner, storage and objectives included, runs as written. Commands that need a
cluster (`cluster=slurm`) are composed only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.config.test_docs_commands import COMMANDS, Command
from tests.helpers import TINY_SSL, entry_point_env, run_entry_point_here

TINY = [o for o in TINY_SSL if not o.startswith("trainer.max_epochs=")] + ["trainer.max_epochs=1", "probe.epochs=5"]
SWEEPS = [c for c in COMMANDS if c.script == "train_ssl" and c.multirun and not c.refused]
NEEDS_A_CLUSTER = ("cluster=slurm",)


def tiny_overrides(command: Command) -> list[str]:
    """The command's overrides with the tiny settings in place of the same keys; a grid keeps two values of its
    first sweep and the first value of any other, an Optuna study runs two trials one after another."""
    parser = OverridesParser.create()
    tiny_keys = {o.get_key_element() for o in parser.parse_overrides(TINY)}
    kept, grid_sweeps = [], 0
    optuna = any(o.startswith(("sweep=", "hydra/sweeper=optuna")) for o in command.overrides)
    for override in parser.parse_overrides(command.overrides):
        key = override.get_key_element()
        if key in tiny_keys or key in ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs", "hydra.sweep.dir"):
            continue
        if override.is_sweep_override() and not optuna:
            values = list(override.sweep_string_iterator())[: 2 if grid_sweeps == 0 else 1]
            grid_sweeps += 1
            kept.append(f"{key}={','.join(values)}")
        else:
            kept.append(override.input_line)
    budget = ["hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1"] if optuna else []
    return [*kept, *TINY, *budget]


def _distinct(commands: list[Command]) -> dict[tuple[str, ...], list[Command]]:
    """The runnable commands by their tiny form: a command written twice (README and docs) runs once."""
    runs: dict[tuple[str, ...], list[Command]] = {}
    for command in commands:
        if not any(o in command.overrides for o in NEEDS_A_CLUSTER):
            runs.setdefault(tuple(tiny_overrides(command)), []).append(command)
    return runs


RUNS = _distinct(SWEEPS)


@pytest.mark.parametrize("overrides", list(RUNS), ids=[" ".join(c.where for c in cs) for cs in RUNS.values()])
def test_documented_sweep_runs_to_its_summary(overrides: tuple[str, ...], cifar_root: Path, tmp_path: Path) -> None:
    command = RUNS[overrides][0]
    if not any(o.startswith(("sweep=", "hydra/sweeper=")) for o in overrides) and len(overrides) == len(TINY):
        pytest.fail(f"{command.where}: a -m command with nothing to sweep: {command.text}")
    (tmp_path / "runs").mkdir()  # the docs' `mkdir -p runs` for stored studies
    sweep = tmp_path / "sweep"
    args = ["-m", *overrides, f"data.root={cifar_root}", f"hydra.sweep.dir={sweep}"]
    # In this process: a process of its own spent half of each sweep's 9 s importing Lightning.
    code, stderr = run_entry_point_here(
        "train_ssl.py", *args, cwd=tmp_path, env=entry_point_env(wandb_home=tmp_path / "wandb")
    )
    assert code == 0, f"{command.where}: {command.text}\n{args}\n{stderr[-3000:]}"
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert (sweep / name).is_file(), f"{command.where}: no {name}"
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and any(r["status"] == "completed" and r["objective"] for r in rows), rows


def test_the_docs_hold_sweeps_of_each_kind() -> None:
    """A grid, an Optuna study, a pruned one, a stored one and one of two objectives, at least."""
    texts = [" ".join(c.overrides) for c in SWEEPS]
    assert any("sweep=" not in t and "hydra/sweeper" not in t for t in texts)
    for needle in ("sweep=temperature_batch", "hydra.sweeper.pruner=", "hydra.sweeper.storage=", "directions="):
        assert any(needle in t for t in texts), needle
