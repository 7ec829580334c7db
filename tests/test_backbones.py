"""The backbone registry: every registered backbone, weights, plugins, `vcp backbones`."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import urllib.error
from importlib.metadata import EntryPoint

import pytest
import torch
from typer.testing import CliRunner

from backbones import BackboneError, Registry, WeightsError, default_registry, get_backbone
from backbones.torchvision_models import BUILTINS
from backbones.video_models import VIDEO_BUILTINS
from vcp.cli import app

REGISTERED = default_registry().names()


def test_builtins_are_registered_through_entry_points():
    specs = default_registry().specs()
    for name, (dim, release, _) in BUILTINS.items():
        assert specs[name].ok and specs[name].feature_dim == dim and specs[name].default_weights == release
        assert specs[name].distribution.startswith("vcp-toolkit")


# the smallest window and frame each clip backbone takes (default: 4 frames of 64x64)
CLIP_INPUT = {"s3d": (16, 224), "mvit_v1_b": (16, 224), "mvit_v2_s": (16, 224)}


@pytest.mark.parametrize("name", [*REGISTERED, "timm/resnet18"])
def test_every_backbone_random_init_frozen_pooled(name):
    model = get_backbone(name, weights=None)
    if model.kind == "clip":  # [B, 3, T, H, W] windows
        t, side = CLIP_INPUT.get(name, (4, 64))
        batch = 1 if side > 64 else 2
        x = torch.randn(batch, 3, t, side, side)
    else:
        batch, x = 2, torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    with torch.enable_grad():
        assert model(x[:1]).grad_fn is None
    assert out.shape == (batch, model.feature_dim)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


# One model of each timm family that takes any input size; five of them (mobilenetv3,
# mobilenetv4, ghostnet, lcnet, hgnetv2) pool into a hidden layer wider than num_features.
TIMM_FAMILIES = [
    "resnet18", "efficientnet_b0", "mobilenetv3_small_050", "mobilenetv4_conv_small", "ghostnet_050", "lcnet_050",
    "hgnetv2_b0", "convnext_atto", "regnetx_002", "densenet121", "repvgg_a0", "fastvit_t8",
]


@pytest.mark.parametrize("name", TIMM_FAMILIES)
def test_a_timm_backbone_declares_the_width_it_returns(name):
    import timm

    model = get_backbone(f"timm/{name}", weights=None)
    with torch.inference_mode():
        rows = model(torch.randn(2, 3, 64, 64))
    assert rows.shape == (2, model.feature_dim)
    wider = name in ("mobilenetv3_small_050", "mobilenetv4_conv_small", "ghostnet_050", "lcnet_050", "hgnetv2_b0")
    with torch.device("meta"):  # num_features only: no weights needed
        declared = timm.create_model(name, pretrained=False, num_classes=0).num_features
    assert (model.feature_dim > declared) == wider
    from backbones.timm_models import feature_dim

    assert feature_dim(name) == model.feature_dim  # learnt without building it (the dry run) and from the built model


def test_a_timm_backbone_is_built_once(monkeypatch):
    """Its width is read from the model built, not from a second one on the meta device."""
    import timm

    built = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: built.append(a[0]) or real(*a, **k))
    assert get_backbone("timm/vit_tiny_patch16_224", weights=None).feature_dim == 192
    assert built == ["vit_tiny_patch16_224"]


def test_extract_with_a_backbone_wider_than_num_features(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12)
    runner = CliRunner()
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "p"), "--frames", "4", "--size", "64", "--mode", "cpu"]).exit_code == 0
    r = runner.invoke(app, ["extract", str(tmp_path / "p"), str(tmp_path / "f"), "--backbone", "timm/mobilenetv3_small_050",
                            "--weights", "none", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    # its own recipe (224, crop_pct 0.875) from 64x64 stored frames: upsampled, said once
    assert r.output.count("frames stored at 64x64 are upsampled to 256x256 for timm/mobilenetv3_small_050's 224x224 input") == 1
    import h5py

    with h5py.File(tmp_path / "f/train_features_multiscale.h5") as h5:
        assert h5["features"].shape[2] == h5.attrs["feature_dim"] == 1024


def test_weights_from_state_dict_file_head_keys_ignored(tmp_path):
    import torchvision

    full = torchvision.models.efficientnet_v2_s(weights=None)
    path = tmp_path / "effnet.pth"
    torch.save(full.state_dict(), path)  # as published: classifier.* keys included
    model = get_backbone("efficientnet_v2_s", weights=str(path))
    assert torch.equal(model.features[0][0].weight, full.features[0][0].weight)
    assert model.weights_source == str(path)
    x = torch.randn(1, 3, 64, 64)
    full.classifier = torch.nn.Identity()
    assert torch.allclose(model(x), full.eval()(x), atol=1e-6)


@pytest.mark.parametrize("name, fallback", [
    ("timm/vit_tiny_patch16_224", False), ("timm/resnet18", False), ("timm/efficientnet_b0", False),
    ("timm/convnext_atto", False), ("timm/swin_tiny_patch4_window7_224", True),  # buffers made at init, not saved
    ("timm/eva02_tiny_patch14_224", True), ("resnet50", False), ("r3d_18", False),
])
def test_a_weights_file_is_put_in_place_of_the_weights_without_a_random_init(name, fallback, tmp_path, monkeypatch):
    """The model from a state_dict file equals one built, initialized and loaded as before, in
    every tensor and in its output; built on the meta device (no tensor initialized at random)
    except where it keeps a tensor the file does not hold."""
    import backbones.weights as w

    torch.manual_seed(0)
    reference = get_backbone(name, weights="none")
    path = tmp_path / "weights.pth"
    torch.save(reference.state_dict(), path)
    made_for_real = []
    real = w.load_into
    monkeypatch.setattr(w, "load_into", lambda model, *a, **k: (made_for_real.append(not k.get("assign")),
                                                                real(model, *a, **k))[1])
    model = get_backbone(name, weights=str(path))
    assert made_for_real[-1] is fallback
    assert not w._holds_meta(model) and model.state_dict().keys() == reference.state_dict().keys()
    for (k, a), b in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), k
    x = torch.randn(2, 3, 112, 112, 112)[:, :, :8] if name == "r3d_18" else torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))


def test_a_model_that_cannot_be_built_on_the_meta_device_is_built_as_before():
    from backbones.weights import built_with

    class Computes(torch.nn.Module):  # its constructor reads a value: impossible on the meta device
        def __init__(self):
            super().__init__()
            self.scale = float(torch.ones(1).item())
            self.fc = torch.nn.Linear(3, 2)

    state = {"fc.weight": torch.arange(6.0).view(2, 3), "fc.bias": torch.ones(2), "head.weight": torch.zeros(5)}
    model = built_with(Computes, state, head_prefixes=("head.",), source="w.pth", arch="computes")
    assert not model.fc.weight.is_meta and torch.equal(model.fc.weight, state["fc.weight"])
    with pytest.raises(WeightsError, match=r"w.pth: does not fit computes: 1 missing \(e.g. fc.bias\)"):
        built_with(Computes, {"fc.weight": state["fc.weight"]}, head_prefixes=(), source="w.pth", arch="computes")


def test_mismatched_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match=r"does not fit resnet50: .*missing.*; 1 unexpected \(e.g. conv.weight\)"):
        get_backbone("resnet50", weights=str(path))
    with pytest.raises(WeightsError, match="weights file not found"):
        get_backbone("resnet50", weights=str(tmp_path / "missing.pth"))


def test_default_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    full = torchvision.models.resnet50(weights=None)
    ckpt = tmp_path / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"  # IMAGENET1K_V2's file
    ckpt.parent.mkdir(parents=True)
    torch.save(full.state_dict(), ckpt)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    model = get_backbone("resnet50", "DEFAULT")
    assert torch.equal(model.conv1.weight, full.conv1.weight)
    assert "IMAGENET1K_V2" in model.weights_source


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("offline")


def test_default_weights_offline_and_absent_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    expected = str(tmp_path / "hub" / "checkpoints" / "efficientnet_v2_s-dd5fe13b.pth")
    with pytest.raises(WeightsError) as info:
        get_backbone("efficientnet_v2_s", "DEFAULT")
    assert expected in str(info.value) and "--weights PATH" in str(info.value)
    result = CliRunner().invoke(app, ["extract", str(tmp_path), str(tmp_path / "f"), "--device", "cpu"])
    assert result.exit_code == 2  # processed dir has no .pt: usage error before weights


def test_timm_default_weights_come_from_the_cache_and_offline_fail_at_once_naming_its_folder(tmp_path, monkeypatch):
    import socket

    import timm
    from huggingface_hub import constants
    from safetensors.torch import save_file

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    created = []
    real_create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: created.append(k.get("pretrained")) or real_create(*a, **k))
    with pytest.raises(WeightsError) as info:
        get_backbone("timm/convnext_tiny", "DEFAULT")
    assert str(tmp_path / "models--timm--convnext_tiny.in12k_ft_in1k") in str(info.value)
    assert True not in created  # no download was tried
    reference = real_create("convnext_atto", pretrained=False)
    snapshot = tmp_path / "models--timm--convnext_atto.d2_in1k" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    save_file(reference.state_dict(), str(snapshot / "model.safetensors"))
    model = get_backbone("timm/convnext_atto", "DEFAULT")
    assert torch.equal(model.stem[0].weight, reference.stem[0].weight)
    assert model.weights_source == f"timm convnext_atto.d2_in1k ({snapshot / 'model.safetensors'})"


def test_unknown_backbone_and_release_list_the_options():
    with pytest.raises(BackboneError, match=re.escape("Invalid backbone ('nope'). Available: ")) as info:
        get_backbone("nope")
    assert "efficientnet_v2_s" in str(info.value) and "timm/<model_name>" in str(info.value)
    with pytest.raises(WeightsError, match="Supported values are: DEFAULT, IMAGENET1K_V1"):
        get_backbone("resnet50", "IMAGENET9K")
    with pytest.raises(BackboneError, match="unknown timm model"):
        get_backbone("timm/not_a_model_xyz", None)


def _ep(name, value):
    return EntryPoint(name=name, value=value, group="vcp.backbones")


def test_broken_plugins_are_listed_and_the_rest_still_work():
    registry = Registry(
        [
            _ep("tiny", "tests.plugins:tiny"),
            _ep("ghost", "no_such_module_xyz:factory"),
            _ep("nodim", "tests.plugins:no_feature_dim"),
            _ep("boom", "tests.plugins:raises"),
            _ep("notcallable", "tests.plugins:NOT_CALLABLE"),
            _ep("tiny", "tests.plugins:no_feature_dim"),  # duplicate name
        ]
    )
    specs = registry.specs()
    assert specs["tiny"].ok and specs["tiny"].feature_dim == 7
    assert 'failed to load plugin "ghost" due to ModuleNotFoundError' in specs["ghost"].error
    assert "no int feature_dim" in specs["nodim"].error
    assert "plugin exploded" in specs["boom"].error
    assert "not callable" in specs["notcallable"].error
    assert any("duplicate backbone name" in (s.error or "") for s in specs.values())
    assert registry.names() == ["tiny"]
    assert registry.create("tiny", None)(torch.randn(2, 3, 8, 8)).shape == (2, 7)
    with pytest.raises(BackboneError, match="broken"):
        registry.create("ghost", None)


def test_a_plugin_never_takes_over_a_built_in_name_or_timms_prefix():
    """A distribution registering ``resnet50`` is the broken duplicate, whatever order the
    entry points come in; vcp's own resnet50 is the one built."""
    for order in (1, -1):
        registry = Registry([_ep("resnet50", "tests.plugins:tiny"), _ep("resnet50", "backbones.torchvision_models:resnet50"),
                             _ep("timm/vit_x", "tests.plugins:tiny")][::order])
        specs = registry.specs()
        assert specs["resnet50"].entry_point == "backbones.torchvision_models:resnet50" and specs["resnet50"].ok
        (dup,) = [s for k, s in specs.items() if k.startswith("resnet50 [")]
        assert dup.entry_point == "tests.plugins:tiny" and "duplicate backbone name" in dup.error
        assert "already provided by" in dup.error and "backbones.torchvision_models:resnet50" in dup.error
        (timm,) = [s for k, s in specs.items() if k.startswith("timm/vit_x [")]
        assert "the name prefix timm/ belongs to timm's models" in timm.error
        assert registry.spec("resnet50").feature_dim == 2048  # the lazy path picks the built-in too
        assert Registry(registry._entry_points).spec("resnet50").entry_point == "backbones.torchvision_models:resnet50"


def test_frames_as_stored_by_default_is_a_property_of_the_spec(monkeypatch):
    import backbones._registry as registry_module
    from vcp.stages import settings
    from vcp.stages.settings import ExtractConfig

    registry = Registry([_ep("as_stored", "tests.plugins:as_stored"), _ep("tiny", "tests.plugins:tiny"),
                         _ep("resnet50", "backbones.torchvision_models:resnet50")])
    assert [registry.spec(n).frames_as_stored for n in ("as_stored", "tiny", "resnet50")] == [True, False, True]
    monkeypatch.setattr(registry_module, "_default", registry)
    settings._spec_of.cache_clear()
    try:
        assert not ExtractConfig(backbone="as_stored").uses_model_recipe  # a plugin can declare it too
        assert ExtractConfig(backbone="tiny").uses_model_recipe
        assert not ExtractConfig(backbone="resnet50").uses_model_recipe
        assert ExtractConfig(backbone="as_stored", recipe="model").uses_model_recipe
    finally:
        settings._spec_of.cache_clear()


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    """Two real distributions (dist-info + entry_points.txt) on sys.path: one works, one is broken."""
    site = tmp_path / "site"
    (site / "goodvcpplugin").mkdir(parents=True)
    (site / "goodvcpplugin" / "__init__.py").write_text(
        "from tests.plugins import tiny\n"
    )
    for dist, ep in [("goodvcpplugin", "tiny_net = goodvcpplugin:tiny"), ("badvcpplugin", "bad_net = badvcpplugin_missing:f")]:
        info = site / f"{dist}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(f"[vcp.backbones]\n{ep}\n"))
    monkeypatch.syspath_prepend(str(site))
    import backbones._registry as reg

    monkeypatch.setattr(reg, "_default", None)
    yield
    sys.modules.pop("goodvcpplugin", None)


def test_installed_plugin_distributions_and_vcp_backbones(installed_plugins):
    specs = default_registry().specs()
    assert specs["tiny_net"].ok and specs["tiny_net"].distribution == "goodvcpplugin 1.2.3"
    assert not specs["bad_net"].ok and specs["bad_net"].distribution == "badvcpplugin 1.2.3"
    assert get_backbone("tiny_net", None)(torch.randn(1, 3, 8, 8)).shape == (1, 7)
    result = CliRunner().invoke(app, ["backbones"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 4}
    assert "ok" in lines["tiny_net"] and "goodvcpplugin 1.2.3" in lines["tiny_net"]
    assert "broken: failed to load plugin" in lines["bad_net"] and "badvcpplugin 1.2.3" in lines["bad_net"]
    for name in BUILTINS:
        assert "ok" in lines[name]


def test_source_checkout_without_install_still_has_the_builtins():
    from backbones._registry import _source_checkout_entry_points

    specs = Registry(_source_checkout_entry_points()).specs()
    assert {n: s.feature_dim for n, s in specs.items() if s.ok} == {
        **{n: d for n, (d, _, _) in BUILTINS.items()}, **{n: d for n, (d, *_) in VIDEO_BUILTINS.items()}}
    assert all(s.distribution == "vcp-toolkit (source checkout)" for s in specs.values())


def test_weights_are_parsed_once_into_a_typed_value(tmp_path):
    from pathlib import Path

    from backbones import NoWeights, Release, WeightsFile, parse_weights
    from backbones.weights import plugin_argument

    local = tmp_path / "w"  # no suffix, but it exists: a file
    local.write_bytes(b"x")
    assert parse_weights(None) == parse_weights("none") == parse_weights("None") == NoWeights()
    assert parse_weights(str(local)) == WeightsFile(local)
    assert parse_weights("ckpt/model.bin") == WeightsFile(Path("ckpt/model.bin"))  # missing: fails when read, naming it
    assert parse_weights("model.safetensors") == WeightsFile(Path("model.safetensors"))
    assert parse_weights("DEFAULT") == Release("DEFAULT") and parse_weights("IMAGENET1K_V2") == Release("IMAGENET1K_V2")
    assert parse_weights(Release("X")) == Release("X")  # typed values pass through
    assert [plugin_argument(parse_weights(v)) for v in (None, "DEFAULT", str(local))] == [None, "DEFAULT", str(local)]


def test_looking_a_backbone_up_loads_only_its_plugin(monkeypatch):
    import backbones._registry as reg

    loaded = []
    real = reg._describe
    monkeypatch.setattr(reg, "_describe", lambda ep: (loaded.append(ep.name), real(ep))[1])
    registry = Registry([_ep("tiny", "tests.plugins:tiny"), _ep("ghost", "no_such_module_xyz:factory"), _ep("boom", "tests.plugins:raises")])
    assert registry.create("tiny", None).feature_dim == 7
    assert loaded == ["tiny"]
    with pytest.raises(BackboneError, match="broken"):
        registry.create("boom", None)
    assert loaded == ["tiny", "boom"]


def test_the_backbone_wrapper_is_transparent_to_state_dicts_and_attributes(tmp_path):
    """``get_backbone`` wraps the module, but its state_dict has the architecture's own keys:
    it loads into a bare torchvision model, and a file saved from it loads back via weights."""
    import torchvision

    torch.manual_seed(3)
    model = get_backbone("resnet50", weights=None)
    state = model.state_dict()
    assert not any(k.startswith("net.") for k in state) and "conv1.weight" in state
    bare = torchvision.models.resnet50()
    bare.fc = torch.nn.Identity()
    bare.load_state_dict(state)  # strict: same keys as the architecture's
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(bare.eval()(x), model(x))
    assert model.conv1 is model.net.conv1  # the module's attributes, through the wrapper
    path = tmp_path / "mine.pth"
    torch.save(state, path)
    again = get_backbone("resnet50", weights=str(path))
    for (k, a), b in zip(state.items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    nested = torch.nn.Sequential(get_backbone("resnet50", weights=None))
    nested.load_state_dict(torch.nn.Sequential(model).state_dict())  # inside another module too
    torch.testing.assert_close(nested(x), model(x))


def test_a_plugins_recipe_is_checked_and_applied(tmp_path, videos):
    """Nonsense (two means, a zero std) makes the plugin broken in the listing and refused
    before any work; a plugin's own recipe (64x64, squashed) is what its network is given."""
    from vcp.stages.extract import extract
    from vcp.stages.settings import ExtractConfig, TensorizeConfig
    from vcp.stages.tensorize import tensorize

    registry = Registry([_ep("bad", "tests.plugins:bad_recipe"), _ep("own", "tests.plugins:own_recipe")])
    specs = registry.specs()
    assert specs["bad"].error == "its input recipe cannot be used: mean must be 3 finite numbers, got (0.5, 0.5)"
    with pytest.raises(BackboneError, match="broken: its input recipe cannot be used"):
        registry.create("bad", None)
    assert specs["own"].ok and specs["own"].input.size == (64, 64)
    model = registry.create("own", None)
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=8, width=96, height=64)
    tensorize(raw, tmp_path / "p", TensorizeConfig.from_options(frames=2, size=32), console=None)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    config = ExtractConfig(backbone="own", weights=None, device="cpu", multi_scale=False, fuse_conv_bn=False)
    assert config.uses_model_recipe  # auto: a plugin's own recipe
    extract(tmp_path / "p", tmp_path / "f", config, model=model)
    assert seen and all(shape[1:] == (3, 64, 64) for shape in seen)


def test_timm_resnet50_through_the_command_line_both_ways(tmp_path, videos):
    raw = tmp_path / "raw"
    videos.copy_to(raw / "train/cat/v.mp4", codec="h264", num_frames=12, width=96, height=64)
    runner = CliRunner()
    bb = ["--backbone", "timm/resnet50", "--weights", "none", "--device", "cpu", "--no-multi-scale"]
    assert runner.invoke(app, ["tensorize", str(raw), str(tmp_path / "p"), "-T", "2", "--size", "256"]).exit_code == 0
    for args in (["extract", str(tmp_path / "p"), str(tmp_path / "f")],
                 ["extract", "--from-videos", str(raw), str(tmp_path / "g"), "-T", "2"]):
        r = runner.invoke(app, [*args, *bb])
        assert r.exit_code == 0, r.output
    import h5py

    for folder in ("f", "g"):
        with h5py.File(tmp_path / folder / "train_features.h5") as h5:
            assert h5["features"].shape == (1, 2, 2048) and h5.attrs["recipe"] == "model"
            assert json.loads(h5.attrs["input_size"]) == [224, 224] and h5.attrs["crop_pct"] == 0.95
