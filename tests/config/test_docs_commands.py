"""Every `python train_ssl.py ...` / `python train_linear.py ...` written in README.md and docs/*.md composes.

The commands are read from fenced code blocks (lines joined at a trailing `\\`) and from inline code
spans, and each one's overrides are composed with Hydra's compose API on conf/ and checked with
`simclr.config.rules.check`, as the scripts do before a run writes anything; nothing is trained. So a
renamed key, group or option cannot leave a stale command in the docs: the test names its file and line.

- `-m` (multirun) is dropped; a sweep value (`a,b`, `choice(...)`, `range(...)`, `interval(...)` with or
  without `tag(...)`) is told apart by Hydra's own override parser, and the command is composed with every
  sweep at its first value, then once for each other value of one sweep (an interval gives its two ends).
  A sweep value without `-m` is an error, as it is for Hydra.
- Placeholders (`<date>`, `<run dir>`, ...) become a dummy path segment: composing never reads a file.
- In a fenced block, a command whose next line starts with `error:` is a transcript of a refusal: it
  must be refused.
"""

from __future__ import annotations

import functools
import re
import shlex
from dataclasses import dataclass, field

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

import simclr  # noqa: F401  (registers the schemas and resolvers before anything composes)
from simclr.config.rules import check
from simclr.errors import ConfigError
from tests.helpers import CONF, REPO

DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# The commands the docs held when this test was written; fewer means the finder lost some (or a page did).
MIN_COMMANDS = 64

REFUSED = (HydraException, OmegaConfBaseException, ConfigError)  # what a refused config raises
COMMAND = re.compile(r"(?:^|[\s$(])(?:python3?|torchrun(?:\s+-\S+)*)\s+(train_ssl|train_linear)\.py(?=\s|$)(.*)$")
PLACEHOLDER = re.compile(r"<[^<>\n]*>")
DUMMY = "PLACEHOLDER"
SHELL_ENDS = {"&&", "||", ";", "|", ">", ">>"}


@dataclass
class Command:
    where: str  # file:line
    script: str  # train_ssl or train_linear
    text: str
    overrides: list[str] = field(default_factory=list)
    multirun: bool = False
    refused: bool = False  # a transcript: the next line of its block is `error: ...`


def parse_command(where: str, line: str, refused: bool = False) -> Command | None:
    """The command in one logical line (continuations joined), or None; raises on a flag it does not know."""
    match = COMMAND.search(line)
    if match is None:
        return None
    script, rest = match.groups()
    lexer = shlex.shlex(PLACEHOLDER.sub(DUMMY, rest), posix=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    command = Command(where, script, line.strip(), refused=refused)
    for token in lexer:
        if token in SHELL_ENDS:
            break
        if token in ("-m", "--multirun"):
            command.multirun = True
        elif token.startswith("-"):
            raise ValueError(f"{where}: {token} is not a flag this test knows: {line.strip()}")
        elif token not in ("...", DUMMY):  # an elided tail, or a whole-token placeholder
            command.overrides.append(token)
    return command


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Joins lines that end with a backslash, keeping the first line's number."""
    joined: list[tuple[int, str]] = []
    start, parts = None, []
    for number, line in lines:
        start = number if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        joined.append((start, " ".join([*parts, line])))
        start, parts = None, []
    if parts:
        joined.append((start, " ".join(parts)))
    return joined


def find_commands(text: str, name: str) -> list[Command]:
    """Commands in fenced code blocks and inline code spans of a markdown text."""
    commands: list[Command] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []
    prose: list[tuple[int, str]] = []

    def flush_block() -> None:
        logical = _logical_lines(block)
        for i, (number, line) in enumerate(logical):
            following = logical[i + 1][1].strip() if i + 1 < len(logical) else ""
            if (command := parse_command(f"{name}:{number}", line, following.startswith("error:"))) is not None:
                commands.append(command)

    def flush_paragraph() -> None:
        if not prose:
            return
        first, paragraph = prose[0][0], "\n".join(line for _, line in prose)
        for span in re.finditer(r"(?<!`)`([^`]+)`(?!`)", paragraph):
            number = first + paragraph.count("\n", 0, span.start())
            if (command := parse_command(f"{name}:{number}", span.group(1).replace("\n", " "))) is not None:
                commands.append(command)
        prose.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        marker = re.match(r"\s*(```|~~~)", line)
        if fence is None and marker:
            flush_paragraph()
            fence, block = marker.group(1), []
        elif fence is not None and line.strip().startswith(fence):
            flush_block()
            fence = None
        elif fence is not None:
            block.append((number, line))
        elif line.strip():
            prose.append((number, line))
        else:
            flush_paragraph()
    flush_paragraph()
    return commands


def variants(command: Command) -> list[list[str]]:
    """Override lists to compose: every sweep at its first value, then each other value of each sweep."""
    parsed = OverridesParser.create().parse_overrides(command.overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps: list[tuple[str, list[str]]] = []
    for o in parsed:
        if not o.is_sweep_override():
            continue
        if o.is_interval_sweep():
            sweep = o.value()
            ends = [int(v) if float(v).is_integer() else v for v in (sweep.start, sweep.end)]
            values = [str(v) for v in ends]
        else:
            values = list(o.sweep_string_iterator())
        sweeps.append((o.get_key_element(), values))
    if sweeps and not command.multirun:
        raise ValueError(f"{command.where}: sweep values without -m, which Hydra refuses: {command.text}")
    first = [f"{key}={values[0]}" for key, values in sweeps]
    out = [fixed + first]
    for i, (key, values) in enumerate(sweeps):
        out += [fixed + first[:i] + [f"{key}={v}"] + first[i + 1 :] for v in values[1:]]
    return out


def compose_command(script: str, overrides: list[str]) -> None:
    """Composes the config a script would run with, and checks it as the script does; raises REFUSED."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=script, overrides=overrides, return_hydra_config=True)
    check(cfg)


@functools.cache
def _refusal(script: str, overrides: tuple[str, ...]) -> Exception | None:
    """compose_command's refusal, or None; once per distinct command (the docs repeat some)."""
    try:
        compose_command(script, list(overrides))
    except REFUSED as e:
        return e
    return None


def _all_commands() -> list[Command]:
    commands = []
    for path in DOC_FILES:
        commands += find_commands(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    return commands


COMMANDS = _all_commands()


def test_the_docs_hold_commands() -> None:
    assert len(COMMANDS) >= MIN_COMMANDS, [c.where for c in COMMANDS]
    assert {c.script for c in COMMANDS} == {"train_ssl", "train_linear"}
    assert any(c.multirun for c in COMMANDS) and any(c.refused for c in COMMANDS)
    assert any(len(variants(c)) > 1 for c in COMMANDS if c.multirun)  # sweeps were expanded


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_composes(command: Command) -> None:
    for overrides in variants(command):
        refusal = _refusal(command.script, tuple(overrides))
        if command.refused:
            assert refusal is not None, f"{command.where}: {command.text} is shown refused, but it composes"
        elif refusal is not None:
            pytest.fail(f"{command.where}: {command.text}\n  composed as {overrides}\n  refused: {refusal}")


def test_the_helper_refuses_a_stale_command() -> None:
    """The same finder and helper fail on a renamed key, group option or group, and on a bad value."""
    doc = "\n".join(
        [
            "```bash",
            "python train_ssl.py loss.temprature=0.5        # a renamed key",
            "python train_ssl.py experiment=quick_start",
            "python train_linear.py ckpt=<run>/last.ckpt probes=cached_adam",
            "python train_ssl.py -m knn.k=200,0",
            "```",
        ]
    )
    commands = find_commands(doc, "stale.md")
    assert [c.where for c in commands] == [f"stale.md:{n}" for n in (2, 3, 4, 5)]
    for command in commands:
        with pytest.raises(REFUSED):
            for overrides in variants(command):
                compose_command(command.script, overrides)


def test_the_finder_reads_what_the_docs_write() -> None:
    """Continuations, -m, quoted sweep syntax, comma lists, placeholders, comments and inline spans."""
    doc = "\n".join(
        [
            "Probe it with `python train_linear.py ckpt=runs/ssl/<date>/<time>/checkpoints/last.ckpt",
            "trainer=cpu` (a span over two lines), or not: `train_linear.py ckpt=...`.",
            "",
            "```bash",
            "python train_ssl.py -m sweep=temperature_batch experiment=quickstart \\",
            "    'optimizer.lr=tag(log, interval(1e-3, 8e-3))' 'data.batch_size=choice(128, 256)'  # a study",
            "torchrun --nproc_per_node=4 train_ssl.py trainer=ddp hydra.run.dir=runs/ssl/<run dir> && echo done",
            "$ python train_ssl.py model.arch=vgg",
            "error: model.arch='vgg' is not known; ...",
            "python train_ssl.py -m loss.temperature=0.1,0.2 data.batch_size=256,512",
            "```",
        ]
    )
    linear, study, torchrun, refused, grid = find_commands(doc, "doc.md")
    assert linear.where == "doc.md:1" and linear.overrides == [
        f"ckpt=runs/ssl/{DUMMY}/{DUMMY}/checkpoints/last.ckpt",
        "trainer=cpu",
    ]
    assert study.where == "doc.md:5" and study.multirun
    assert variants(study) == [
        ["sweep=temperature_batch", "experiment=quickstart", "optimizer.lr=0.001", "data.batch_size=128"],
        ["sweep=temperature_batch", "experiment=quickstart", "optimizer.lr=0.008", "data.batch_size=128"],
        ["sweep=temperature_batch", "experiment=quickstart", "optimizer.lr=0.001", "data.batch_size=256"],
    ]
    assert torchrun.overrides == ["trainer=ddp", f"hydra.run.dir=runs/ssl/{DUMMY}"]
    assert refused.refused and not grid.refused
    assert len(variants(grid)) == 3
    with pytest.raises(ValueError, match="without -m"):
        variants(parse_command("x.md:1", "python train_ssl.py loss.temperature=0.1,0.2"))
