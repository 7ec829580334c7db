"""The README's road from a dataset to a training loop, run as written: its UCF101 commands on
a UCF101-shaped sample (1-based classInd.txt, official split files), then its Python block
on what they wrote. Only the speed options are added (a tiny network and frame size)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcp.cli import app
from vcp.inputs.synth_datasets import UCF_CLASSES, make_ucf101

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["-T", "4", "--size", "32", "--backbone", "timm/resnet18", "--weights", "none", "--device", "cpu",
        "--recipe", "stored"]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def _ucf101_commands() -> list[list[str]]:
    block = next(b for b in _blocks("bash") if "vcp manifest ucf101" in b)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip().startswith("vcp ")]


def test_readme_ucf101_recipe_then_its_training_snippet(tmp_path, monkeypatch):
    make_ucf101(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    commands = _ucf101_commands()
    assert [c[:2] for c in commands] == [["vcp", "manifest"], ["vcp", "extract"]]
    for command in commands:
        args = command[1:] + (FAST if command[1] == "extract" else [])
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (command, r.output)
    snippet = next(b for b in _blocks("python") if "FeatureDataset" in b)
    scope: dict = {}
    exec(compile(snippet, str(README), "exec"), scope)  # noqa: S102 - the README's own code, as written
    train = scope["train"]
    assert train.classes == list(UCF_CLASSES) and train.num_classes == 3
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # classInd's 1..3, made 0-based
    assert scope["loss"].ndim == 0 and bool(scope["loss"].isfinite())
    assert train.index_of("YoYo/v_YoYo_g08_c01.avi") == train.names.index("YoYo/v_YoYo_g08_c01.avi")
    assert train[train.index_of("YoYo/v_YoYo_g08_c01.avi")][2:] == (2, "YoYo/v_YoYo_g08_c01.avi")


@pytest.mark.parametrize("subset", [["YoYo"], ["Basketball", "YoYo"]])
def test_a_subset_keeps_the_whole_class_list(tmp_path, subset):
    """Stand-in videos for a few classes only: labels keep their official numbers, and the
    head is as wide as the dataset's class list (the README's snippet does not crash)."""
    import shutil

    videos, splits = make_ucf101(tmp_path)
    for name in set(UCF_CLASSES) - set(subset):
        shutil.rmtree(videos / name)
    runner = CliRunner()
    r = runner.invoke(app, ["manifest", "ucf101", str(videos), str(splits), "-o", str(tmp_path / "m.csv"), "--allow-missing"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["extract", "--from-videos", "--manifest", str(tmp_path / "m.csv"), "--root", str(videos),
                            str(tmp_path / "f"), *FAST])
    assert r.exit_code == 0, r.output
    from vcp.data import FeatureDataset

    ds = FeatureDataset(tmp_path / "f/train_features_multiscale.h5")
    assert ds.num_classes == 3 and ds.category_mapping == {c: i for i, c in enumerate(UCF_CLASSES)}
    assert sorted(set(ds.labels.tolist())) == [UCF_CLASSES.index(c) for c in sorted(subset, key=UCF_CLASSES.index)]


def test_readme_clip_commands_as_written(tmp_path, monkeypatch, videos):
    """The clip backbone and ten-crop commands (random init: only the weights option added)."""
    import h5py

    block = next(b for b in _blocks("bash") if "--backbone r2plus1d_18" in b)
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip().startswith("vcp ")]
    assert len(commands) == 2
    videos.copy_to(tmp_path / "data/raw/train/walk/v.mp4", codec="h264", num_frames=60, fps=30)
    monkeypatch.chdir(tmp_path)
    for command in commands:
        r = CliRunner().invoke(app, [*command[1:], "--weights", "none", "--device", "cpu"])
        assert r.exit_code == 0, (command, r.output)
    with h5py.File("features/r2p1d/train_features_multiscale.h5") as h5:  # 60 frames at 30 fps: 30 at 15; stride 8
        assert h5["window_frames"][0, :, 0].tolist() == [0, 16] and h5.attrs["stride"] == 8
    with h5py.File("features/tencrop/train_features.h5") as h5:  # the video's own 30 fps: 3 windows of 16
        assert h5["features"].shape == (1, 3, 10, 512) and h5.attrs["frame_rate"] == 0.0
