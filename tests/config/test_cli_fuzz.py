"""Property-based test of the command lines of train_ssl.py and train_linear.py: whatever a user types, the
script either accepts it or ends with exit status 2 and one line `error: ...` that names what to fix, and
never with a traceback.

The command lines are drawn from the configs themselves (tests/config/fuzz_strategies.py). Each runs in this
process as `python <script>.py ...` would, up to the job: Hydra composes it and runs the rules (CheckConfig,
run_job), and the job, replaced, only reads the resolved config as the real one does first. Multiruns run
their jobs one after another in this process (Hydra's basic launcher; a SLURM launcher is swapped for it).
A few accepted command lines then train for one step for real, in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import runpy
import shlex
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

import simclr.jobs.train_linear
import simclr.jobs.train_ssl
from simclr.training.trainer import resolved_config
from tests.config.fuzz_strategies import KEYS, SCRIPTS, SECTIONS, command_lines, input_classes
from tests.helpers import (
    QUIET,
    REPO,
    TINY_MODEL,
    TINY_PROBE,
    TINY_SSL,
    entry_point_env,
    one_error_line,
    run_entry_point,
)

# Each example composes one to five configs in this process (about 0.1 s each): 25 per script keep the default
# run within the suite's 5 minutes; `-m slow` tries 2000 per script. derandomize: CI draws the same lines each time.
# No shrinking: each example runs Hydra (0.1-3 s) and shrinking took minutes; a failure is printed as drawn.
NO_SHRINK = (Phase.explicit, Phase.generate)
settings.register_profile("cli_fuzz", max_examples=25, deadline=None, derandomize=True, phases=NO_SHRINK)
FAST = settings(settings.get_profile("cli_fuzz"), suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=2000)
# What a job that raised a bug writes as its status.json error (run_job): `TypeError: ...`, not a user's line.
BUG = re.compile(r"^[A-Z]\w*(Error|Exception)\b")


@dataclass(frozen=True)
class Outcome:
    """How a command line ended: its exit status, its stderr, and an exception that escaped run_script."""

    code: int
    stderr: str
    escaped: BaseException | None = None
    job_errors: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """file:line in function, where the escaped exception was raised."""
        if self.escaped is None:
            return ""
        frame = traceback.extract_tb(self.escaped.__traceback__)[-1]
        return f"{type(self.escaped).__name__} at {frame.filename}:{frame.lineno} in {frame.name}"


def _job(result: dict[str, float]) -> Any:
    """The replaced training function: reads the whole resolved config, as the real job does first."""

    def job(cfg: Any) -> dict[str, float]:
        resolved_config(cfg)
        return result

    return job


@contextlib.contextmanager
def _as_a_script(script: str, args: list[str], workdir: Path) -> Iterator[tuple[io.StringIO, list]]:
    """sys.argv, the working directory, stderr and stdout, the environment and logging as for a process of
    its own; the jobs replaced, a SLURM launcher run as the basic one; Hydra's global state cleared after."""
    stderr, cwd, root = io.StringIO(), os.getcwd(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    patches = [
        mock.patch.object(sys, "argv", [str(REPO / f"{script}.py"), *args]),
        mock.patch.dict(os.environ, env, clear=True),
        mock.patch.object(simclr.jobs.train_ssl, "train_ssl", _job({"val/knn_top1": 0.5})),
        mock.patch.object(simclr.jobs.train_linear, "train_linear", _job({"val_top1": 0.5})),
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ]
    with contextlib.suppress(ImportError):
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

        patches.append(mock.patch.object(BaseSubmititLauncher, "launch", BasicLauncher.launch))
    GlobalHydra.instance().clear()
    try:
        os.chdir(workdir)
        with contextlib.ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for patch in patches:
                stack.enter_context(patch)
            yield stderr, caught
    finally:
        os.chdir(cwd)
        GlobalHydra.instance().clear()
        for handler in set(root.handlers) - set(handlers):
            handler.close()
        root.handlers[:], root.level = handlers, level


def run_in_process(script: str, args: list[str]) -> Outcome:
    """Runs `python <script>.py *args` up to the job in this process, in a directory of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        code, escaped = 0, None
        with _as_a_script(script, args, Path(tmp)) as (stderr, caught):
            try:
                runpy.run_path(str(REPO / f"{script}.py"), run_name="__main__")
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)  # what Python prints for SystemExit("message")
            except BaseException as e:  # noqa: BLE001  (what escaped is the finding)
                code, escaped = 1, e
        shown = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]
        statuses = [json.loads(p.read_text()) for p in Path(tmp).rglob("status.json")]
        errors = tuple(s["error"] for s in statuses if s.get("error"))
        return Outcome(code, "\n".join([*stderr.getvalue().splitlines(), *shown]), escaped, errors)


def names_what_to_fix(line: str, args: list[str]) -> bool:
    """Whether an error line names a key or group: one the command line gives or a section of it, or a dotted
    key of the configs (a rule may refuse the value a preset or a default gave)."""
    given = {a.lstrip("+~").partition("=")[0] for a in args if not a.startswith("-")}
    sections = {g.rsplit(".", i)[0] for g in given for i in range(g.count(".") + 1)}
    names = sections | {k for k in [*KEYS, *SECTIONS] if "." in k}
    return any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", line) for name in names if name)


def outcome_class(args: list[str], outcome: Outcome) -> str:
    if outcome.code == 0:
        return "accepted"
    return "refused in one line" if outcome.code == 2 else "multirun with failed jobs" if "-m" in args else "crashed"


def check_outcome(script: str, args: list[str], outcome: Outcome) -> None:
    """Accepted (0; with -m also 1: jobs that failed alone, each with its own line), or refused: exit status 2,
    one line `error: ...` naming a key or group; never a traceback or an exception out of run_script."""
    command = f"python {script}.py {shlex.join(args)}"
    assert outcome.escaped is None, f"{command}\n{outcome.where}: {outcome.escaped}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert "Traceback" not in outcome.stderr, f"{command}\n{outcome.stderr[-3000:]}"
    bugs = [e for e in outcome.job_errors if BUG.match(e)]
    assert not bugs, f"{command}\na job failed with a bug: {bugs[0]}"
    if outcome.code == 0 or (outcome.code == 1 and "-m" in args):
        assert len(lines) <= 1, f"{command}\n{outcome.stderr[-3000:]}"
        return
    assert outcome.code == 2, f"{command}\nexit status {outcome.code}\n{outcome.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{command}\n{outcome.stderr[-3000:]}"
    assert names_what_to_fix(lines[0], args), f"{command}\n{lines[0]}"


# ---- the property, bounded (default run) and long (-m slow) ----------------------------------------------


def fuzz(script: str, args: list[str]) -> None:
    """One drawn command line, its classes of input and outcome counted (pytest --hypothesis-show-statistics)."""
    outcome = run_in_process(script, args)
    for name in sorted(input_classes(script, args)) + [outcome_class(args, outcome)]:
        event(name)
    check_outcome(script, args, outcome)


@pytest.mark.parametrize("script", SCRIPTS)
@FAST
@given(data=st.data())
def test_a_command_line_is_accepted_or_refused_in_one_line(script: str, data: st.DataObject) -> None:
    fuzz(script, data.draw(command_lines(script), label="args"))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 2000 lines took 10 minutes a script on 2 cores, 20 with another job running
@pytest.mark.parametrize("script", SCRIPTS)
@SLOW
@given(data=st.data())
def test_many_command_lines_are_accepted_or_refused_in_one_line(script: str, data: st.DataObject) -> None:
    fuzz(script, data.draw(command_lines(script), label="args"))


# ---- what the fuzzing found, each fixed at its cause ------------------------------------------------

# Each was a traceback (or a job failing with a bug) when the fuzzer first drew it; each now ends in one line.
FOUND = [
    pytest.param("train_linear", ["model.width=8"], id="key-of-a-group-not-selected"),
    pytest.param("train_ssl", ["model=null"], id="group-null"),
    pytest.param("train_ssl", ["-m", "logger=csv,null"], id="group-null-in-a-sweep"),
    pytest.param("train_ssl", ["data=1"], id="group-given-a-number"),
    pytest.param("train_ssl", ["~logger", "logger.name=x"], id="key-of-a-deleted-group"),
    pytest.param("train_linear", ["model=resnet18", "~model", "model.width=8"], id="key-of-a-deleted-group-linear"),
    pytest.param("train_ssl", ["~model=1"], id="group-deleted-with-a-number"),
    pytest.param("train_ssl", ["-m", "model=glob(*)"], id="group-glob-sweep"),
    pytest.param("train_ssl", ["model=${nope}"], id="group-given-an-interpolation"),
    pytest.param("train_ssl", ["name=${nope}", "name=x"], id="unresolvable-interpolation-in-an-override"),
    pytest.param("train_ssl", ["logger.name=${nope}"], id="unresolvable-interpolation-no-rule-reads"),
    pytest.param("train_linear", ["ckpt=${nope}"], id="unresolvable-interpolation-in-the-run-dir"),
    pytest.param("train_ssl", ["~paths"], id="section-the-job-reads-deleted"),
    pytest.param("train_ssl", ["trainer.max_epochs.nokey=1"], id="key-below-a-value-set-by-interpolation"),
    pytest.param("train_ssl", ["augmentation.crop_ratio.nokey=1"], id="key-below-a-list"),
    pytest.param("train_ssl", ["optimizer.betas.nokey=[0.9,0.999]"], id="key-below-a-list-of-one-optimizer"),
    pytest.param("train_ssl", ["-m", "loss.temperature=interval(0.1,0.5)"], id="interval-sweep-on-the-grid-sweeper"),
]


@pytest.mark.parametrize("script, args", FOUND)
def test_what_the_fuzzing_found(script: str, args: list[str]) -> None:
    check_outcome(script, args, run_in_process(script, args))


# ---- a few accepted command lines train for one step, for real ---------------------------------------------

ONE_STEP = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "probe.epochs=1"]


def tiny(script: str, args: list[str], data_root: Path) -> list[str]:
    """The drawn overrides, then the tiny model and data of the test suite, one training step."""
    base = TINY_SSL if script == "train_ssl" else [*TINY_MODEL, *TINY_PROBE]
    return [*args, *base, *QUIET, f"data.root={data_root}", *ONE_STEP]


@settings(
    FAST, max_examples=2, phases=NO_SHRINK, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(data=st.data())
def test_an_accepted_command_line_trains(data: st.DataObject, cifar_root: Path) -> None:
    """The property above replaces the job; here a sample of what it accepts runs one real step: a value
    the rules let through must not crash the training (a data-dependent refusal is one line too)."""
    script = data.draw(st.sampled_from(SCRIPTS), label="script")
    args = tiny(script, data.draw(command_lines(script, valid_only=True), label="drawn"), cifar_root)
    assume(run_in_process(script, args).code == 0)
    with tempfile.TemporaryDirectory() as tmp:
        done = run_entry_point(f"{script}.py", *args, cwd=Path(tmp), env=entry_point_env(wandb_home=Path(tmp)))
    command = f"python {script}.py {shlex.join(args)}"
    assert done.returncode in (0, 2), f"{command}\nexit status {done.returncode}\n{done.stderr[-3000:]}"
    if done.returncode == 2:
        assert names_what_to_fix(one_error_line(done.stderr), args), f"{command}\n{done.stderr[-3000:]}"
