"""Encoder export (`python -m simclr.jobs.export`) and `simclr.load_encoder`: every form gives the checkpoint's
features on real-format images, loads without this package, and bad inputs get one line with the fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from simclr.data.cifar import CIFAR10_MEAN, CIFAR10_STD, load_split
from simclr.errors import CheckpointError, ExportError
from simclr.jobs.export import EXAMPLE_BATCH, export_encoder, main
from simclr.jobs.export_format import (
    JSON_FILE,
    PT2_FILE,
    PT2_RECORD,
    README_FILE,
    SAFETENSORS_FILE,
    TORCHVISION_FILE,
    readme,
    torchvision_equivalent,
    torchvision_snippet,
)
from simclr.jobs.load import load_encoder
from simclr.models.nets import CifarResNet
from simclr.training.checkpoints import CONFIG_KEY, KIND_KEY, find_checkpoint, load_pretrained_encoder
from simclr.views.augment import SimCLRAugment
from tests.helpers import REPO, WANDB_FOLDERS, run_entry_point, sha256, ssl_config

ATOL = 1e-5


@pytest.fixture(scope="module")
def images(cifar_root: Path) -> torch.Tensor:
    """16 test images read through the project's data path, normalised as the encoder saw them: (16, 3, 32, 32)."""
    uint8, _ = load_split(cifar_root, train=False)
    return SimCLRAugment().normalize(uint8[:16])


@pytest.fixture(scope="module")
def tiny_export(ssl_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The export of the tiny pretraining checkpoint (resnet_tiny, width 4: no torchvision form)."""
    return _export_without_warnings(ssl_checkpoint, tmp_path_factory.mktemp("tiny_export"))


def _export_without_warnings(ckpt: Path, out: Path | None = None) -> dict[str, Path]:
    """export_encoder with every warning an error: torch.export and its save warn of nothing here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return export_encoder(ckpt, out)


@pytest.fixture(scope="module")
def resnet18_checkpoint(ssl_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining checkpoint of this project's format holding a ResNet-18 of width 64, in a run directory.

    Training one on the CPU would take minutes, so the tiny run's checkpoint is rewritten: its config names
    resnet18/64 and its encoder weights are a seeded ResNet-18's, with BatchNorm statistics and affine
    parameters drawn away from their initial 0 and 1 so that a BatchNorm mapped wrongly changes the features.
    """
    torch.manual_seed(0)
    encoder = CifarResNet("resnet18", width=64)
    with torch.no_grad():
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    ckpt = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    ckpt[CONFIG_KEY]["model"].update(arch="resnet18", width=64)
    ckpt["state_dict"] = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    ckpt.pop("optimizer_states", None)  # the tiny run's optimizer state belongs to other shapes
    path = tmp_path_factory.mktemp("resnet18_run") / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def resnet18_export(resnet18_checkpoint: Path) -> dict[str, Path]:
    return _export_without_warnings(resnet18_checkpoint)  # the default: <run dir>/export


@pytest.fixture(scope="module")
def resnet18_features(resnet18_checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    """The features (16, 512) of the ResNet-18 checkpoint's own encoder: what every form must reproduce."""
    return _reference(resnet18_checkpoint, images)


@pytest.fixture(scope="module")
def tiny_features(ssl_checkpoint: Path, images: torch.Tensor) -> torch.Tensor:
    """The features (16, 32) of the tiny checkpoint's own encoder."""
    return _reference(ssl_checkpoint, images)


def _reference(ckpt: Path, images: torch.Tensor) -> torch.Tensor:
    encoder, _ = load_pretrained_encoder(ckpt)
    with torch.no_grad():
        return encoder.eval()(images)


def _without_simclr(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import simclr` (and any simclr.x) raises from here on: what a program without this package sees."""
    for name in [n for n in sys.modules if n == "simclr" or n.startswith("simclr.")]:
        monkeypatch.setitem(sys.modules, name, None)


# ---- the forms -------------------------------------------------------------------------------------------


def test_exports_go_next_to_the_checkpoints_of_the_run(resnet18_checkpoint: Path, resnet18_export: dict) -> None:
    run = resnet18_checkpoint.parents[1]
    assert {p.parent for p in resnet18_export.values()} == {run / "export"}
    names = {TORCHVISION_FILE, PT2_FILE, SAFETENSORS_FILE, JSON_FILE, README_FILE}
    assert {p.name for p in (run / "export").iterdir()} == names  # and no .tmp files left behind


def test_torchvision_form_is_torchvisions_resnet18_with_the_documented_lines(
    resnet18_export: dict, images: torch.Tensor, resnet18_features: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = resnet18_features
    info = json.loads(resnet18_export["json"].read_text())
    snippet = info["load"]["torchvision"]
    assert "torchvision.models.resnet18()" in snippet and "simclr" not in snippet
    assert snippet.strip() in resnet18_export["readme"].read_text().replace("\n    ", "\n")  # the README shows it
    monkeypatch.chdir(resnet18_export["torchvision"].parent)  # the snippet names the file, as a user runs it
    _without_simclr(monkeypatch)
    namespace: dict = {}
    exec(snippet, namespace)  # strict load_state_dict: a missing or extra key raises here
    model = namespace["m"]
    assert type(model).__module__ == "torchvision.models.resnet"
    with torch.no_grad():
        features = model(images)
    assert features.shape == (16, 512)
    torch.testing.assert_close(features, expected, atol=ATOL, rtol=0)


# Run in a fresh `python -I -W error`, in a folder holding tiny/ and resnet18/, each with encoder.pt2, images.pt and
# load.json (export.json's "load" lines). The venv's python finds simclr; a meta path finder then makes
# `import simclr` (or any simclr.x) raise, and the lines export.json gives load each encoder with torch alone.
_RUN_PT2_WITHOUT_SIMCLR = """
import importlib.util, json, os, sys
findable = importlib.util.find_spec("simclr") is not None
class _NoSimclr:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "simclr":
            raise ImportError(f"{name}: blocked, the export must load without this package")
sys.meta_path.insert(0, _NoSimclr())
try:
    import simclr
except ImportError as e:
    blocked = "blocked" in str(e)
else:
    blocked = False
assert findable and blocked, (findable, blocked)
import torch
for which in ("tiny", "resnet18"):
    os.chdir(which)  # the lines name the file, as a user runs them beside it
    images = torch.load("images.pt")
    namespace = {}
    with open("load.json") as f:
        exec(json.load(f)["pt2"], namespace)
    m = namespace["m"]
    with torch.no_grad():
        torch.save({b: m(images[:b]) for b in (1, 5, len(images))}, "features.pt")
    os.chdir("..")
assert not [n for n in sys.modules if n.partition(".")[0] == "simclr"]
"""


def test_pt2_form_runs_with_torch_alone_at_any_batch_size(
    tiny_export: dict,
    resnet18_export: dict,
    tiny_features: torch.Tensor,
    resnet18_features: torch.Tensor,
    images: torch.Tensor,
    tmp_path: Path,
) -> None:
    """Both exports, in a fresh `python -I -W error` that cannot import simclr, from another directory: features
    equal to the checkpoint's encoder's on real images, at batch sizes other than the export's example, and no
    warning."""
    exports = {"tiny": (tiny_export, tiny_features), "resnet18": (resnet18_export, resnet18_features)}
    for which, (files, _) in exports.items():
        (tmp_path / which).mkdir()
        shutil.copy(files["pt2"], tmp_path / which / PT2_FILE)  # moved away from the export directory, as users do
        torch.save(images, tmp_path / which / "images.pt")
        (tmp_path / which / "load.json").write_text(json.dumps(json.loads(files["json"].read_text())["load"]))
    run = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", _RUN_PT2_WITHOUT_SIMCLR],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""  # torch.export.load logs nothing either
    for which, (_, expected) in exports.items():
        features = torch.load(tmp_path / which / "features.pt")
        assert sorted(features) == [1, 5, 16] and EXAMPLE_BATCH not in features
        for batch, got in features.items():
            torch.testing.assert_close(got, expected[:batch], atol=ATOL, rtol=0, msg=f"{which}, batch {batch}")


@pytest.mark.parametrize("which", ["tiny", "resnet18"])
def test_readme_and_the_pt2_record_are_export_json(which: str, request: pytest.FixtureRequest) -> None:
    """README.txt is generated from the record export.json holds, and encoder.pt2 carries the same record."""
    files = request.getfixturevalue(f"{which}_export")
    info = json.loads(files["json"].read_text())
    assert files["readme"].read_text() == readme(info)
    extra = {PT2_RECORD: ""}
    torch.export.load(files["pt2"], extra_files=extra)
    assert json.loads(extra[PT2_RECORD]) == info
    for snippet in info["load"].values():  # every documented line is in the README
        assert snippet.strip() in files["readme"].read_text().replace("\n    ", "\n")


@pytest.mark.parametrize("which", ["tiny", "resnet18"])
def test_safetensors_form_holds_the_weights_and_what_the_encoder_expects(
    which: str, request: pytest.FixtureRequest, images: torch.Tensor
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    ckpt_path = request.getfixturevalue("ssl_checkpoint" if which == "tiny" else "resnet18_checkpoint")
    files = request.getfixturevalue(f"{which}_export")
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    with safe_open(str(files["safetensors"]), "pt") as f:
        meta = f.metadata()
    model_cfg = ckpt[CONFIG_KEY]["model"]
    assert (meta["arch"], int(meta["width"])) == (model_cfg["arch"], model_cfg["width"])
    assert tuple(json.loads(meta["mean"])) == CIFAR10_MEAN and tuple(json.loads(meta["std"])) == CIFAR10_STD
    assert (int(meta["epoch"]), int(meta["global_step"])) == (ckpt["epoch"], ckpt["global_step"])
    assert meta["source_checkpoint"] == str(ckpt_path.resolve())
    # The keys are the torchvision form's: they load strictly into a freshly built encoder of that shape.
    model = CifarResNet(meta["arch"], int(meta["width"]))
    model.load_state_dict(load_file(str(files["safetensors"])))
    assert model.feature_dim == int(meta["feature_dim"])
    expected = request.getfixturevalue(f"{which}_features")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), expected, atol=ATOL, rtol=0)


def test_export_of_a_run_directory_reads_its_last_checkpoint(ssl_checkpoint: Path, tmp_path: Path) -> None:
    run = ssl_checkpoint.parents[1]
    assert find_checkpoint(run) == ssl_checkpoint  # the function the probe and resume use too
    assert main([f"ckpt={run}", f"out={tmp_path}"]) == 0
    info = json.loads((tmp_path / JSON_FILE).read_text())
    assert info["source"]["checkpoint"] == str(ssl_checkpoint.resolve())


def test_an_encoder_torchvision_lacks_gets_the_other_forms_and_the_reason(
    ssl_checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="simclr"):
        files = export_encoder(ssl_checkpoint, tmp_path)
    assert set(files) == {"pt2", "safetensors", "json", "readme"}
    assert not (tmp_path / TORCHVISION_FILE).exists()
    info = json.loads(files["json"].read_text())
    assert (
        info["torchvision"] is None and "model.arch=resnet_tiny has no torchvision model" in info["torchvision_skipped"]
    )
    assert "model.arch=resnet_tiny has no torchvision model" in caplog.text
    assert info["input"]["shape"] == ["B", 3, 32, 32] and info["output"]["shape"] == ["B", 32]  # 8 x width 4


@pytest.mark.parametrize("arch", ["resnet34", "resnet50"])
def test_the_torchvision_lines_hold_for_the_deeper_resnets(
    arch: str, tmp_path: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snippet export.json carries, for the other width-64 encoders (resnet18: the test above)."""
    torch.manual_seed(0)
    encoder = CifarResNet(arch, width=64).eval()
    monkeypatch.chdir(tmp_path)
    torch.save(encoder.state_dict(), TORCHVISION_FILE)
    namespace: dict = {}
    exec(torchvision_snippet(arch), namespace)
    with torch.no_grad():
        torch.testing.assert_close(namespace["m"](images[:4]), encoder(images[:4]), atol=ATOL, rtol=0)


def test_only_width_64_resnets_have_a_torchvision_form() -> None:
    assert [torchvision_equivalent(a, 64)[0] for a in ("resnet18", "resnet34", "resnet50")] == [
        "resnet18",
        "resnet34",
        "resnet50",
    ]
    assert torchvision_equivalent("resnet18", 32) == (None, "model.width=32: torchvision's ResNets have width 64 only")


# ---- load_encoder --------------------------------------------------------------------------------------

SOURCES: dict[str, Callable[[dict], Path]] = {
    "checkpoint": lambda f: f["ckpt"],
    "run directory": lambda f: f["ckpt"].parents[1],
    "export directory": lambda f: f["export"]["json"].parent,
    "safetensors": lambda f: f["export"]["safetensors"],
    "pt2": lambda f: f["export"]["pt2"],
    "torchvision": lambda f: f["export"]["torchvision"],
}


@pytest.mark.parametrize("source", SOURCES)
def test_load_encoder_from_every_source_gives_the_checkpoint_features(
    source: str, resnet18_checkpoint: Path, resnet18_export: dict, images: torch.Tensor, resnet18_features: torch.Tensor
) -> None:
    import simclr

    path = SOURCES[source]({"ckpt": resnet18_checkpoint, "export": resnet18_export})
    encoder = simclr.load_encoder(path)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), resnet18_features, atol=ATOL, rtol=0)


def test_load_encoder_of_the_tiny_export_directory(
    tiny_export: dict, images: torch.Tensor, tiny_features: torch.Tensor
) -> None:
    encoder = load_encoder(tiny_export["json"].parent)
    assert isinstance(encoder, CifarResNet) and (encoder.arch, encoder.width) == ("resnet_tiny", 4)
    with torch.no_grad():
        torch.testing.assert_close(encoder(images), tiny_features, atol=ATOL, rtol=0)


@pytest.mark.parametrize("source", ["checkpoint", "pt2"])
def test_a_trainable_encoder_is_in_train_mode_with_gradients(
    source: str, ssl_checkpoint: Path, tiny_export: dict, images: torch.Tensor
) -> None:
    path = ssl_checkpoint if source == "checkpoint" else tiny_export["pt2"]
    encoder = load_encoder(path, trainable=True)
    assert encoder.training and all(p.requires_grad for p in encoder.parameters())
    encoder(images).square().mean().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    frozen = load_encoder(path)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())


# ---- the command ---------------------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in sorted(folder.iterdir())}


def test_command_exports_then_refuses_to_overwrite_unless_forced(
    ssl_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`python -m simclr.jobs.export` as a user runs it, then its main() in this process."""
    out = tmp_path / "exp"
    first = run_entry_point("simclr.jobs.export", f"ckpt={ssl_checkpoint}", f"out={out}", cwd=REPO)
    assert first.returncode == 0, first.stderr
    assert {p.name for p in out.iterdir()} == {PT2_FILE, SAFETENSORS_FILE, JSON_FILE, README_FILE}
    assert "has no torchvision model" in first.stdout  # the skipped form, said where the written files are listed
    before = _digests(out)
    assert main([f"ckpt={ssl_checkpoint}", f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(out) in err and "force=true" in err
    assert _digests(out) == before  # nothing touched
    (out / PT2_FILE).write_bytes(b"stale")
    assert main([f"ckpt={ssl_checkpoint}", f"out={out}", "force=true"]) == 0
    # Rewritten: .pt2 archives carry a random id and safetensors' header order varies, so compare content.
    after = _digests(out)
    assert {k: after[k] for k in (JSON_FILE, README_FILE)} == {k: before[k] for k in (JSON_FILE, README_FILE)}
    encoder = load_pretrained_encoder(ssl_checkpoint)[0]
    for name in (PT2_FILE, SAFETENSORS_FILE):
        reloaded = load_encoder(out / name)
        assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_command_arguments(ssl_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, expected in (
        ([], "no checkpoint given"),
        ([f"ckpt={ssl_checkpoint}", "output=x"], "'output=x' is not an argument"),
        ([f"ckpt={ssl_checkpoint}", "force=yes"], "force=yes must be true or false"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "usage: python -m simclr.jobs.export ckpt=PATH" in err
    (tmp_path / "file").write_text("")
    assert main([f"ckpt={ssl_checkpoint}", f"out={tmp_path / 'file'}"]) == 2
    assert "is a file, not a directory; pass out=DIR" in capsys.readouterr().err


def test_a_full_disk_during_the_export_is_one_line(
    ssl_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README is the last file written: the disk fills there; the files before it are whole, no .tmp stays."""

    def disk_full(info: dict) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("simclr.jobs.export.readme", disk_full)
    monkeypatch.setattr("simclr.training.resilience.free_bytes", lambda folder: 0)
    out = tmp_path / "exp"
    assert main([f"ckpt={ssl_checkpoint}", f"out={out}"]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {out / README_FILE}: no space left on the device (0 B free in {out}): free space there "
        f"and export again with force=true, or pass out=DIR on a disk with room\n"
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([JSON_FILE, PT2_FILE, SAFETENSORS_FILE])
    assert json.loads((out / JSON_FILE).read_text())["arch"] == "resnet_tiny"


# ---- bad inputs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(ssl_checkpoint: Path, tiny_export: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files of every wrong kind, made once."""
    import torchvision
    from safetensors import safe_open
    from safetensors.torch import save_file

    base = tmp_path_factory.mktemp("bad_exports")
    (base / "notes.txt").write_text("these are my notes, not an encoder")
    torch.save(torchvision.models.resnet18().state_dict(), base / "resnet18_imagenet.pt")  # 7x7 stem, fc
    save_file({"a": torch.zeros(3), "b": torch.ones(2, 2)}, str(base / "random.safetensors"))
    probe = torch.load(ssl_checkpoint, map_location="cpu", weights_only=True)
    probe[KIND_KEY] = "probe"  # what read_checkpoint tells a probe checkpoint by
    torch.save(probe, base / "probe.ckpt")
    data = tiny_export["safetensors"].read_bytes()
    (base / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    data = tiny_export["pt2"].read_bytes()
    (base / "truncated.pt2").write_bytes(data[: len(data) // 2])
    torch.export.save(torch.export.export(torch.nn.Linear(3, 2), (torch.zeros(2, 3),)), base / "other.pt2")
    shutil.copy(tiny_export["pt2"], base / "renamed_export.ckpt")  # an export passed where a checkpoint goes
    # The tiny encoder's weights, with metadata naming width 8: the record decides the architecture, not shapes.
    with safe_open(str(tiny_export["safetensors"]), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    save_file(state, str(base / "mislabelled.safetensors"), metadata={**meta, "width": "8"})
    (base / "imagenet").mkdir()  # torchvision's ImageNet ResNet-18 beside the record of a width-64 resnet18 export
    torch.save(torchvision.models.resnet18().state_dict(), base / "imagenet" / TORCHVISION_FILE)
    record = json.loads(tiny_export["json"].read_text()) | {"arch": "resnet18", "width": 64, "torchvision": "resnet18"}
    (base / "imagenet" / JSON_FILE).write_text(json.dumps(record))
    torch.save({"model": torch.nn.Linear(3, 2).state_dict(), "epoch": 3}, base / "other_program.pt")
    (base / "empty_dir").mkdir()
    return {p.name: p for p in base.iterdir()} | {
        "missing.ckpt": base / "missing.ckpt",
        "imagenet/encoder_torchvision.pt": base / "imagenet" / TORCHVISION_FILE,
    }


# (file, what the message says about it). Each message names the file and ends with the fix ("pass ...").
LOAD_ERRORS = {
    "missing.ckpt": "does not exist",
    "notes.txt": "is not a readable checkpoint or encoder export",
    "resnet18_imagenet.pt": "holds tensors but no export.json is beside it to name their architecture",
    "imagenet/encoder_torchvision.pt": "do not match the architecture the export.json beside it names "
    "(model.arch=resnet18, width=64): 0 missing, 2 unexpected, 1 of another shape (first: fc.bias)",
    "random.safetensors": "is a safetensors file of another program",
    "mislabelled.safetensors": "do not match the architecture its metadata names (model.arch=resnet_tiny, width=8)",
    "probe.ckpt": "is a probe checkpoint, but a pretrain checkpoint is needed",
    "truncated.safetensors": "is not a readable safetensors file",
    "truncated.pt2": "is not a readable",
    "other.pt2": "is an ExportedProgram (.pt2) of another program",
    "other_program.pt": "holds no encoder of this project",
    "empty_dir": "is a directory with no encoder in it",
}


@pytest.mark.parametrize("name", LOAD_ERRORS)
def test_load_encoder_refuses_with_one_line(name: str, bad: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError) as err:
        load_encoder(bad[name])
    message = str(err.value)
    assert "\n" not in message and str(bad[name]) in message and LOAD_ERRORS[name] in message
    assert "; pass " in message


# (file, what the message says about it, the fix it names)
EXPORT_ERRORS = {
    "missing.ckpt": ("does not exist", "e.g. ckpt=runs/ssl/"),
    "notes.txt": ("is not a readable PyTorch checkpoint", "pass a .ckpt file written by train_ssl.py"),
    "resnet18_imagenet.pt": ("is a PyTorch file but not a checkpoint of this project", "pass a .ckpt"),
    "random.safetensors": ("is a safetensors file, not a pretraining checkpoint", "pass ckpt=<run dir>/checkpoints/"),
    "renamed_export.ckpt": ("is an ExportedProgram (.pt2) file, not a pretraining", "pass ckpt=<run dir>/checkpoints/"),
    "probe.ckpt": ("is a probe checkpoint, but a pretrain checkpoint is needed", "pass the pretraining checkpoint"),
    "empty_dir": ("is a directory without checkpoints/last.ckpt", "pass the checkpoint file itself"),
}


@pytest.mark.parametrize("name", EXPORT_ERRORS)
def test_command_refuses_what_is_not_a_pretraining_checkpoint(
    name: str, bad: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main([f"ckpt={bad[name]}", f"out={tmp_path / 'exp'}"]) == 2
    err = capsys.readouterr().err
    what, fix = EXPORT_ERRORS[name]
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert str(bad[name]) in err and what in err and fix in err
    assert not (tmp_path / "exp").exists()  # refused before writing anything


@pytest.mark.parametrize("name", [README_FILE, TORCHVISION_FILE])
def test_export_refuses_an_existing_file_before_writing_any(name: str, ssl_checkpoint: Path, tmp_path: Path) -> None:
    """Whichever export file is there: the tiny encoder has no torchvision form, but a stale one would pass for it."""
    (tmp_path / name).write_text("mine")
    with pytest.raises(ExportError, match=rf"{name} already exists .*pass force=true"):
        export_encoder(ssl_checkpoint, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_text() == "mine"
    export_encoder(ssl_checkpoint, tmp_path, force=True)
    assert {p.name for p in tmp_path.iterdir()} == {PT2_FILE, SAFETENSORS_FILE, JSON_FILE, README_FILE}


# ---- W&B -----------------------------------------------------------------------------------------------


def _wandb_records(path: Path) -> list[bytes]:
    """The records of an offline run file: a 7-byte header (':W&B', magic, version), then LevelDB's log
    format: 32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    data, block, pos, records, partial = path.read_bytes(), 32768, 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is zero padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        partial += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(partial)
            partial = b""
    return records


def test_wandb_run_logs_the_final_encoder_as_a_model_artifact(
    cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: torch.Tensor
) -> None:
    """No account, no network: the offline run records the artifact, whose files W&B keeps for `wandb sync`."""
    import wandb
    from wandb.proto import wandb_internal_pb2

    from simclr.jobs.train_ssl import train_ssl

    for key in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(key)
    for key, value in {"MODE": "offline", "SILENT": "true", "CONSOLE": "off"}.items():
        monkeypatch.setenv(f"WANDB_{key}", value)
    for key in WANDB_FOLDERS:
        monkeypatch.setenv(f"WANDB_{key}", str(tmp_path / "wandb_home" / key.lower()))
    cfg = ssl_config(cifar_root, tmp_path / "run", ["trainer.max_epochs=1", "logger=wandb"])
    try:
        metrics = train_ssl(cfg)
    finally:
        if wandb.run is not None:
            wandb.run.finish()
        # The offline run file is written by W&B's service process; tearing the service down waits until
        # every record (the artifact's comes last) is on disk. A later W&B test starts a new service.
        wandb.teardown()
    run_file = next((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    run_id = run_file.stem.removeprefix("run-")
    artifacts = []
    for data in _wandb_records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "artifact":
            artifacts.append(record.artifact)
    assert len(artifacts) == 1
    artifact = artifacts[0]
    assert (artifact.type, artifact.name) == ("model", f"encoder-{run_id}")
    meta = json.loads(artifact.metadata)
    assert (meta["arch"], meta["width"], meta["feature_dim"]) == ("resnet_tiny", 4, 32)
    assert meta["val_knn_top1"] == pytest.approx(metrics["val/knn_top1"])
    assert meta["test_knn_top1"] == pytest.approx(metrics["test/knn_top1"])
    export = tmp_path / "run" / "export"
    entries = {e.path: e for e in artifact.manifest.contents}
    assert set(entries) == {PT2_FILE, SAFETENSORS_FILE, JSON_FILE, README_FILE}
    for name, entry in entries.items():
        # W&B's own copy, which `wandb sync` uploads: the exported bytes, even if the run directory moves.
        staged = Path(entry.local_path)
        assert staged.is_relative_to(tmp_path / "wandb_home") and staged.read_bytes() == (export / name).read_bytes()
    staged_weights = tmp_path / "fetched" / SAFETENSORS_FILE  # what a dashboard user downloads
    staged_weights.parent.mkdir()
    staged_weights.write_bytes(Path(entries[SAFETENSORS_FILE].local_path).read_bytes())
    with torch.no_grad():
        fetched = load_encoder(staged_weights)(images)
    torch.testing.assert_close(
        fetched, _reference(tmp_path / "run" / "checkpoints" / "last.ckpt", images), atol=ATOL, rtol=0
    )
