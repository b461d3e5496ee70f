"""The README's quick-start block, run as written on tiny data: pretraining, its probe, the random encoder's probe.

tests/config/test_docs_commands.py composes every command; tests/jobs/test_quickstart.py (slow) runs the first two
on the real data for accuracy and time. This runs all three in the default suite, with the tiny dataset, one
epoch and float32 in place of the same keys, so that the block keeps producing what the README's table reports:
a width-32 encoder, and probes of it and of a random one on mirror-averaged features.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from tests.config.test_docs_commands import COMMANDS, Command
from tests.helpers import QUIET, REPO, TINY_DATA, TINY_PROBE, entry_point_env, run_entry_point_here

TINY_PRETRAIN = [*TINY_DATA, *QUIET, "trainer.precision=32-true", "trainer.max_epochs=1"]
TINY_PRETRAIN += ["trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1", "scheduler.warmup_epochs=1"]


def quickstart_block() -> list[Command]:
    """The commands of the first fenced block under README's "## Quick start" heading, in order."""
    lines = (REPO / "README.md").read_text().splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("## Quick start"))
    fence = [i + 1 for i in range(heading, len(lines)) if lines[i].startswith("```")][:2]  # 1-based line numbers
    block = [
        c for c in COMMANDS if c.where.startswith("README.md:") and fence[0] < int(c.where.split(":")[1]) < fence[1]
    ]
    return sorted(block, key=lambda c: int(c.where.split(":")[1]))


def with_tiny(overrides: list[str], tiny: list[str], replace: dict[str, str]) -> list[str]:
    """The command's overrides, each key that `tiny` sets dropped, `replace`'s keys given new values, then `tiny`."""
    parser = OverridesParser.create()
    tiny_keys = {o.get_key_element() for o in parser.parse_overrides(tiny)}
    kept = []
    for override in parser.parse_overrides(overrides):
        key = override.get_key_element()
        if key in replace:
            kept.append(f"{key}={replace[key]}")
        elif key not in tiny_keys:
            kept.append(override.input_line)
    return [*kept, *tiny]


def test_the_readme_quickstart_block_runs_as_written(cifar_root: Path, tmp_path: Path) -> None:
    pretrain, probe, random = quickstart_block()
    assert (pretrain.script, probe.script, random.script) == ("train_ssl", "train_linear", "train_linear")
    env, data = entry_point_env(), f"data.root={cifar_root}"

    def run(command: Command, tiny: list[str], replace: dict[str, str], run_dir: str) -> dict:
        args = [*with_tiny(command.overrides, tiny, replace), data, f"hydra.run.dir={run_dir}"]
        code, stderr = run_entry_point_here(f"{command.script}.py", *args, cwd=tmp_path, env=env)
        assert code == 0, f"{command.where}: {command.text}\n{args}\n{stderr[-3000:]}"
        return json.loads((tmp_path / run_dir / "results.json").read_text())

    run(pretrain, TINY_PRETRAIN, {}, "ssl")
    ckpt = tmp_path / "ssl" / "checkpoints" / "last.ckpt"
    trained = run(probe, TINY_PROBE, {"ckpt": str(ckpt)}, "probe")
    untrained = run(random, TINY_PROBE, {}, "random")
    assert (trained["encoder"], untrained["encoder"]) == ("pretrained", "random")
    # The table compares these two: the same encoder architecture, probed the same way.
    assert trained["model"]["width"] == untrained["model"]["width"] == 32
    assert trained["probe"]["flip_average"] is untrained["probe"]["flip_average"] is True


def test_the_random_encoder_baselines_in_the_docs_run_as_written(cifar_root: Path, tmp_path: Path) -> None:
    """docs/evaluation.md's `train_linear.py model=...` commands: a random encoder of the width they name."""
    baselines = [c for c in COMMANDS if c.where.startswith("docs/evaluation.md:") and c.script == "train_linear"]
    baselines = [c for c in baselines if any(o.startswith("model=") for o in c.overrides)]
    assert baselines, "docs/evaluation.md holds no random-encoder command"
    for i, command in enumerate(baselines):
        args = [*with_tiny(command.overrides, TINY_PROBE, {}), f"data.root={cifar_root}", f"hydra.run.dir=r{i}"]
        code, stderr = run_entry_point_here("train_linear.py", *args, cwd=tmp_path, env=entry_point_env())
        assert code == 0, f"{command.where}: {command.text}\n{stderr[-3000:]}"
        results = json.loads((tmp_path / f"r{i}" / "results.json").read_text())
        width = next((o.split("=")[1] for o in command.overrides if o.startswith("model.width=")), None)
        assert results["encoder"] == "random" and (width is None or results["model"]["width"] == int(width))
