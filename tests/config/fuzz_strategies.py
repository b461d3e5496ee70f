"""Hypothesis strategies that draw command lines of train_ssl.py and train_linear.py from the configs themselves.

Keys, their types and their group options are read from simclr/config/schema.py, the composed default configs
and the option files under conf/<group>/, and ranges from simclr/config/rules.py (RANGES, PAIRS), so a new key,
option or range is drawn without editing this file. tests/config/test_cli_fuzz.py runs what these draw.
"""

from __future__ import annotations

import functools
import math
from enum import Enum
from typing import Any

from hypothesis import strategies as st
from omegaconf import OmegaConf

from simclr.config.rules import PAIRS, RANGES, Range
from simclr.config.schema import OPTIMIZERS, TrainLinearConfig, TrainSSLConfig
from tests.helpers import CONF, compose_config

SCRIPTS = ("train_ssl", "train_linear")
NOT_A_GROUP, NOT_AN_OPTION, NOT_A_KEY = "nogroup", "nope", "nokey"
# Values of the wrong type or shape, and the special ones, tried on every key whatever its type.
ODD_VALUES = (
    *("abc", "''", "", "null", "nan", "inf", "-inf", "1.5", "-1", "0", "1", str(2**64), "1e308", "-1e308"),
    *("true", "[1,2]", "[]", "[[1]]", "{a:1}", "{}", "${nope}", "${data.batch_size}", "'x y'", "'${nope}'"),
)
# What a group is given besides its options: null, no option, an empty value, other types, an interpolation.
ODD_OPTIONS = ("null", NOT_AN_OPTION, "", "1", "true", "[]", "${nope}")
# Sweep values under -m: each expands to at most two jobs (or, for an interval, is refused by the grid sweeper).
SWEEPS = ("{a},{b}", "choice({a},{b})", "range(1,3)", "interval(0.1,0.5)", "tag(log,interval(0.1,0.5))")


def options() -> dict[str, list[str]]:
    """{group: its options}: every folder of conf/, every yaml file in it."""
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(CONF.iterdir()) if d.is_dir()}


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested container; lists are values, `defaults` and `hydra` are Hydra's."""
    if not isinstance(node, dict) or not node:
        return {prefix[:-1]: node} if prefix else {}
    return {
        k: v
        for key, sub in node.items()
        if key not in ("defaults", "hydra")
        for k, v in _leaves(sub, f"{prefix}{key}.").items()
    }


def _sources() -> list[dict[str, Any]]:
    """Where keys come from: the composed defaults, the schemas, every optimizer's schema, every option file."""
    found = [_leaves(OmegaConf.to_container(compose_config(s))) for s in SCRIPTS]
    found += [_leaves(OmegaConf.to_container(OmegaConf.structured(s))) for s in (TrainSSLConfig, TrainLinearConfig)]
    found += [_leaves({"optimizer": OmegaConf.to_container(OmegaConf.structured(s))}) for s in OPTIMIZERS.values()]
    found.append(dict.fromkeys([*RANGES, *PAIRS]))  # the rules' keys, some only Lightning's (trainer.max_steps)
    for path in sorted(CONF.glob("*/*.yaml")):
        node = OmegaConf.to_container(OmegaConf.load(path))
        is_global = path.read_text().startswith("# @package _global_")
        found.append(_leaves(node if is_global else {path.parent.name: node}))
    return found


def keys() -> dict[str, list[Any]]:
    """{key: the values conf/ and the schemas give it} over both scripts (a key of the other script's groups
    is a test input too); group names are drawn as groups, not as keys."""
    samples: dict[str, list[Any]] = {}
    for source in _sources():
        for key, value in source.items():
            if key not in GROUPS and value not in samples.setdefault(key, []):
                samples[key].append(value)
    return samples


def show(value: Any) -> str:
    """A Python value as an override's value: True -> true, None -> null, [1, 2] -> [1,2], an Enum by value."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, str) and (not value or any(c in value for c in " ,()[]{}'\"=")):
        return "'" + value.replace("'", "\\'") + "'"
    return repr(value) if isinstance(value, float) else str(value)


def _around(r: Range) -> tuple[list[Any], list[Any]]:
    """(inside, outside) values of a range: each finite bound and its neighbours on both sides."""
    inside, outside = [v for v in r.also], []
    for bound, open_, outward in ((r.lo, r.open_lo, -math.inf), (r.hi, r.open_hi, math.inf)):
        if not math.isfinite(bound):
            continue
        step = 1 if r.integer else None
        near_in = bound - (step or 0) if outward > 0 else bound + (step or 0)
        near_out = bound + (step or 0) if outward > 0 else bound - (step or 0)
        if step is None:
            near_in, near_out = math.nextafter(bound, -outward), math.nextafter(bound, outward)
        cast = int if r.integer else float
        inside += [cast(near_in)] + ([] if open_ else [cast(bound)])
        outside += [cast(near_out)] + ([cast(bound)] if open_ else [])
    return inside, outside


def values(key: str, samples: list[Any]) -> tuple[list[str], list[str]]:
    """(valid, invalid) values of a key, as typed on a command line."""
    valid = [show(s) for s in samples if not (isinstance(s, str) and "${" in s)]
    typed = next((s for s in samples if s is not None), None)
    if isinstance(typed, Enum):
        valid += [m.value for m in type(typed)]
    if isinstance(typed, bool):
        valid += ["true", "false"]
    invalid: list[str] = []
    if key in RANGES:
        inside, outside = _around(RANGES[key])
        valid, invalid = valid + [show(v) for v in inside], [show(v) for v in outside]
    if key in PAIRS:
        lo, hi, _ = PAIRS[key]
        top = hi if math.isfinite(hi) else 10.0
        valid.append(show([math.nextafter(lo, math.inf), top]))
        invalid += [show(p) for p in ([lo, top], [top, math.nextafter(lo, math.inf)], [top], [0.5, 0.6, 0.7])]
        invalid += [show([0.1, math.nextafter(hi, math.inf)])] if math.isfinite(hi) else []
    return sorted(set(valid)) or ["1"], sorted(set(invalid))


GROUPS = options()
KEYS = keys()
# Sections that are not groups (paths, model.head, trainer.strategy, ...): deleted, or given a scalar or a dict.
SECTIONS = sorted({k.rsplit(".", i)[0] for k in KEYS for i in range(1, k.count(".") + 1)} - set(GROUPS))
VALUES = {key: values(key, samples) for key, samples in KEYS.items()} | {s: (["{}"], []) for s in SECTIONS}
SET, FORMS_OF_A_KEY = "{k}={v}", ("+{k}={v}", "++{k}={v}", "~{k}", "~{k}={v}", "{k}.{x}={v}")


@functools.cache
def selected(script: str) -> set[str]:
    """The top-level sections of a script's default config that are not null (train_linear.py: no model)."""
    return {k for k, v in OmegaConf.to_container(compose_config(script)).items() if v is not None}


@st.composite
def _a_key(draw: st.DrawFn, script: str, valid_only: bool) -> str:
    """A section, then a key in it (the forty-odd Trainer arguments do not crowd out the rest): three times in
    four one of the sections the script selects, else any, such as train_linear.py's model or loss."""
    names = sorted(KEYS) if valid_only else sorted(KEYS) + SECTIONS
    own = valid_only or draw(st.integers(0, 3)) < 3
    tops = sorted({k.split(".")[0] for k in names if not own or k.split(".")[0] in selected(script)})
    top = draw(st.sampled_from(tops))
    return draw(st.sampled_from([k for k in names if k.split(".")[0] == top]))


@st.composite
def _key_override(draw: st.DrawFn, script: str, sweep: bool, valid_only: bool, key: str = "") -> str:
    key = key or draw(_a_key(script, valid_only))
    good, bad = VALUES[key]
    pool = good if valid_only else draw(st.sampled_from([good, bad or good, list(ODD_VALUES)]))
    value = draw(st.sampled_from(pool))
    if sweep:
        a, b = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        return f"{key}={draw(st.sampled_from(SWEEPS)).format(a=a or 1, b=b or 2)}"
    form = SET if valid_only else draw(st.sampled_from([SET] * 4 + list(FORMS_OF_A_KEY)))
    return form.format(k=key, v=value, x=NOT_A_KEY)


@st.composite
def _group_override(draw: st.DrawFn, sweep: bool, valid_only: bool, group: str = "") -> str:
    group = group or draw(st.sampled_from(sorted(GROUPS) + ([] if valid_only else [NOT_A_GROUP])))
    choices = GROUPS.get(group, []) if valid_only else [*GROUPS.get(group, []), *ODD_OPTIONS]
    option = draw(st.sampled_from(choices or [NOT_AN_OPTION]))
    if sweep:
        other = draw(st.sampled_from([*(choices or [NOT_AN_OPTION]), "range(1,3)"]))
        form = draw(st.sampled_from(["{a},{b}", "choice({a},{b})", "glob(*)"]))
        return f"{group}={form.format(a=option, b=other)}"
    forms = ["{g}={o}"] * 3 + ([] if valid_only else ["+{g}={o}", "++{g}={o}", "~{g}", "~{g}={o}"])
    return draw(st.sampled_from(forms)).format(g=group, o=option)


def _override(script: str, sweep: bool = False, valid_only: bool = False) -> st.SearchStrategy[str]:
    return st.one_of(_key_override(script, sweep, valid_only), _group_override(sweep, valid_only))


@st.composite
def _again(draw: st.DrawFn, script: str, earlier: str) -> str:
    """An override of what an earlier one named: the same key or group again, or a key inside it."""
    name = earlier.lstrip("+~").partition("=")[0]
    inside = [k for k in KEYS if k.startswith(f"{name}.")]
    if name in GROUPS and (not inside or draw(st.booleans())):
        return draw(_group_override(False, False, name))
    if name not in VALUES:
        return f"{name}=1"  # an unknown key or group, or a key below a value
    return draw(_key_override(script, False, False, draw(st.sampled_from(inside or [name]))))


@st.composite
def command_lines(draw: st.DrawFn, script: str, valid_only: bool = False) -> list[str]:
    """The arguments after the script's name: valid overrides around one drawn from every form and value (so
    that one early refusal does not hide the rest), sometimes the same key or group again or a key inside it,
    and one in four times -m with up to 2 sweeps (at most 4 jobs). `valid_only`: valid overrides only."""
    args = draw(st.lists(_override(script, valid_only=True), max_size=3 if valid_only else 2))
    if valid_only:
        return args
    args.insert(draw(st.integers(0, len(args))), draw(_override(script)))
    if draw(st.booleans()):
        args.append(draw(_again(script, draw(st.sampled_from(args)))))
    if draw(st.integers(0, 3)) == 3:  # one in four a multirun (each of its jobs composes again)
        args = ["-m", *args, *draw(st.lists(_override(script, sweep=True), min_size=1, max_size=2))]
        if any(a.partition("=")[::2] == ("sweep", o) for a in args for o in GROUPS.get("sweep", [])):
            args.append("hydra.sweeper.n_trials=2")  # an Optuna study: two trials, not its twenty
    return args


# ---- what a command line holds, for Hypothesis's statistics (pytest --hypothesis-show-statistics) ----------

ODD_CLASSES = {
    "null": "null",
    "nan": "nan or inf",
    "inf": "nan or inf",
    "-inf": "nan or inf",
    "": "empty",
    "''": "empty",
}
SWEEP_CLASSES = {
    "tag(": "sweep tag(...)",
    "interval(": "sweep interval",
    "range(": "sweep range",
    "choice(": "sweep choice",
}
FORMS = {"++": "force-add ++key", "+": "add +key", "~": "delete ~key"}


def _value_class(key: str, value: str, sweep: bool) -> str:
    if sweep:
        return next((c for s, c in SWEEP_CLASSES.items() if value.startswith(s)), "sweep a,b" if "," in value else "")
    good, bad = VALUES.get(key, ([], []))
    if value in good:
        return "valid value"
    if value in bad:
        return "value just outside a range"
    if value in ODD_CLASSES:
        return ODD_CLASSES[value]
    kinds = {"[": "list for a scalar", "{": "dict for a scalar", "$": "interpolation", "'$": "interpolation"}
    return next((c for s, c in kinds.items() if value.startswith(s)), "wrong type or huge")


def input_classes(script: str, args: list[str]) -> set[str]:
    """The classes of input in a command line: forms (+, ++, ~, a key given twice, -m), groups (an option, null,
    an unknown option or group), keys (unknown, of a section the script does not select) and values."""
    own = selected(script)
    found, names = {"multirun"} if "-m" in args else set(), []
    for arg in (a for a in args if a != "-m"):
        form = next((f for f in FORMS if arg.startswith(f)), "")
        name, _, value = arg[len(form) :].partition("=")
        found |= {FORMS[form]} if form else set()
        names.append(name)
        sweep = "-m" in args and ("," in value or "(" in value)
        if name in GROUPS or name == NOT_A_GROUP:
            unknown = "unknown group" if name == NOT_A_GROUP else "unknown option" if value == NOT_AN_OPTION else ""
            odd = {"null": "group=null", "": "group= (empty)"}.get(value, "group option") if "=" in arg else ""
            found.add("group sweep" if sweep else unknown or odd)
            continue
        found |= {"unknown key"} if NOT_A_KEY in name or name not in KEYS else set()
        found |= {"key of an unselected section"} if name.split(".")[0] not in own else set()
        found |= {_value_class(name, value, sweep)} if "=" in arg else set()
    return found - {""} | ({"key or group given twice"} if len(set(names)) < len(names) else set())
