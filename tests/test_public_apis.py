"""simclr/ uses other libraries through their public interfaces only: a private name can change in any minor
release that the pins admit. Read from the source's syntax tree, so that a new private use fails here."""

from __future__ import annotations

import ast
import functools

from tests.helpers import REPO

PACKAGES = [REPO / "simclr", REPO / "hydra_plugins"]
# The private names that must stay, each with the reason (module: name).
ALLOWED = {
    # torch's BatchNorm base class: AnyDeviceSyncBatchNorm keeps nn.BatchNorm's parameters, buffers and state_dict
    # keys (checkpoints load into plain networks); torch.nn.SyncBatchNorm subclasses it the same way.
    ("simclr/training/sync_batchnorm.py", "torch.nn.modules.batchnorm._BatchNorm"),
    # The collectives that keep gradients: torch 2.14 deprecates torch.distributed.nn.functional in favour of the
    # functional collectives, which live in this module (simclr/models/collectives.py says which are used).
    ("simclr/models/collectives.py", "torch.distributed._functional_collectives"),
    # torch 2.14 has no public query for native bfloat16 on a CPU; these are what torch's own CPU tests use.
    ("simclr/training/precision.py", "torch.cpu._is_avx512_bf16_supported"),
    ("simclr/training/precision.py", "torch.cpu._is_amx_tile_supported"),
    # TorchDispatchMode is documented at this path (torch.utils._python_dispatch); there is no other.
    ("simclr/training/profiling.py", "torch.utils._python_dispatch.TorchDispatchMode"),
    # `.to()`, `.half()` reach a module's tensors through nn.Module._apply only; SimCLRAugment rebuilds its
    # float32 step constants there (simclr/views/augment.py says why).
    ("simclr/views/augment.py", "super()._apply"),
}
# ATen operator names are attributes of torch.ops.aten, whatever their spelling: not private state.
OPERATOR_NAMESPACES = {"aten"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.AST) -> str:
    """'torch.cpu' for Attribute(Name(torch), cpu); 'super()' for a call of super; '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super":
        return "super()"
    return ""


def _imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("simclr"):
            parts = node.module.split(".")
            found += [f"{node.module}.{a.name}" for a in node.names if _private(a.name) or any(map(_private, parts))]
        elif isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if not a.name.startswith("simclr") and any(map(_private, a.name.split(".")))
            ]
    return found


def _own_attributes(cls: ast.ClassDef) -> set[str]:
    """The attributes a class gives itself: assigned (self._x = ...), defined (def _x), or registered by name
    (self.register_buffer("_x", ...), or a helper called with the name first)."""
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _dotted(node.value) == "self":
            names.add(node.attr)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value))
    return names


def _attribute_reads(tree: ast.AST) -> list[str]:
    """Private attributes read from anything but the reading class's own state: another object (trainer._x,
    node._x), a base class (super()._x), or self._x that the class never sets (a library base class's)."""
    found = []
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    own = {}
    for cls in classes:  # outer classes first (ast.walk is breadth-first): a nested class's nodes are its own
        attributes = _own_attributes(cls)
        own.update({id(node): attributes for node in ast.walk(cls)})
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        base = _dotted(node.value)
        if base in OPERATOR_NAMESPACES or base.endswith(".ops.aten"):
            continue
        if base in ("self", "cls"):
            if node.attr not in own.get(id(node), set()):
                found.append(f"{base}.{node.attr}")
        else:
            found.append(f"{base or '<expression>'}.{node.attr}")
    return found


@functools.cache
def private_uses() -> frozenset[tuple[str, str]]:
    uses = set()
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            where = path.relative_to(REPO).as_posix()
            uses |= {(where, name) for name in _imports(tree) + _attribute_reads(tree)}
    return frozenset(uses)


def test_no_private_names_of_other_libraries() -> None:
    unexpected = private_uses() - ALLOWED
    assert not unexpected, (
        f"private names of other libraries (use a public API, or list it with the reason): {unexpected}"
    )


def test_every_allowed_private_name_is_still_used() -> None:
    """The list shrinks when a use goes: a stale entry would let a new use of the same name pass unseen."""
    assert ALLOWED <= private_uses()


def test_the_scan_finds_what_it_looks_for() -> None:
    """The checks can fail: each kind of private use in a snippet is found."""
    snippet = ast.parse(
        "from lightning_fabric.loggers.csv_logs import _ExperimentWriter\n"
        "import torch.distributed._functional_collectives as fc\n"
        "class Bar(TQDMProgressBar):\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def show(self, trainer):\n"
        "        return trainer._logger_connector, self._mine, self._trainer, super()._apply\n"
    )
    assert _imports(snippet) == [
        "lightning_fabric.loggers.csv_logs._ExperimentWriter",
        "torch.distributed._functional_collectives",
    ]
    assert sorted(_attribute_reads(snippet)) == ["self._trainer", "super()._apply", "trainer._logger_connector"]
