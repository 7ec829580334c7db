"""The DALI graph: exact frame indices per strategy and front, pixels vs a reference."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backbones.spec import IMAGENET
from dali_pipes import STRATEGIES, ClipLoader, SamplingSpec, build_pipeline
from vcp.inputs.synth import CODECS

from .conftest import (
    MEAN,
    QUADRANT_COLOURS,
    STD,
    quadrant_colours,
    read_indices,
    write_colour_quadrants,
    write_size_change,
)

SIZE = 32


def loader(**kwargs) -> ClipLoader:
    kwargs.setdefault("max_batch", 3)
    return ClipLoader(size=SIZE, mean=IMAGENET.mean, std=IMAGENET.std, **kwargs)


def run(ld: ClipLoader, paths, spec):
    items = [(str(p), p.name) for p in paths]
    return [r for batch in ld.load(items, spec) for r in batch]


def reference_clip(path, indices, size=SIZE, flip=False) -> torch.Tensor:
    """Independent reference: PyAV decodes every frame, torch antialiased bilinear resize."""
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    x = torch.from_numpy(np.stack([frames[i] for i in indices])).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = (x / 255.0 - MEAN) / STD
    return x.flip(-1) if flip else x


VIDEOS = [
    dict(codec="h264", num_frames=90, fps=25),
    dict(codec="hevc", num_frames=50, fps=30000 / 1001, width=98, height=58),
    dict(codec="vp9", num_frames=75, fps=30000 / 1001),
    dict(codec="mjpeg", num_frames=20, fps=25, width=66, height=50),  # shorter than T
    dict(codec="h264", num_frames=400, fps=30),  # longer than the 10 s clip? no: 13.3 s
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("cpu_decoder", ["auto", "pyav"])
def test_exact_frame_indices_every_codec(videos, strategy, cpu_decoder):
    spec = SamplingSpec(strategy=strategy, frames=24, clip_duration=2.0, seed=1)
    paths = [videos(**v) for v in VIDEOS]
    results = run(loader(cpu_decoder=cpu_decoder), paths, spec)
    assert [r.path for r in results] == [str(p) for p in paths]  # input order kept
    for r, v in zip(results, VIDEOS, strict=True):
        assert r.ok, r.error
        expected, _ = spec.plan(v["num_frames"], r.info.fps, r.relpath)
        assert r.indices.tolist() == expected.tolist()
        assert read_indices(r.clip) == expected.tolist(), (r.path, r.front)
        assert r.clip.shape == (24, 3, SIZE, SIZE) and r.clip.dtype == torch.float32


def test_fronts_are_dali_for_vp9_mjpeg_and_pyav_otherwise(videos):
    paths = [videos(codec=c) for c in ("h264", "hevc", "vp9", "mjpeg")]
    results = run(loader(), paths, SamplingSpec(frames=4))
    assert [r.front for r in results] == ["pyav", "pyav", "dali", "dali"]
    forced = run(loader(cpu_decoder="pyav"), paths, SamplingSpec(frames=4))
    assert {r.front for r in forced} == {"pyav"}


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "mjpeg"])
def test_pixels_match_reference(videos, codec):
    path = videos(codec=codec, num_frames=30, width=98, height=58)
    spec = SamplingSpec(strategy="segment", frames=8)
    (r,) = run(loader(), [path], spec)
    ref = reference_clip(path, r.indices)
    diff = (r.clip - ref).abs()
    # ~2/255 of pixel range after ImageNet scaling (different resampler rounding, YUV->RGB)
    assert diff.mean() < 0.02, diff.mean()
    assert diff.max() < 0.25, diff.max()


def test_dali_cpu_decoder_and_pyav_front_agree_on_vp9(videos):
    path = videos(codec="vp9", num_frames=60, width=98, height=58)
    spec = SamplingSpec(strategy="uniform", frames=12)
    (a,) = run(loader(cpu_decoder="auto"), [path], spec)
    (b,) = run(loader(cpu_decoder="pyav"), [path], spec)
    assert (a.front, b.front) == ("dali", "pyav")
    assert read_indices(a.clip) == read_indices(b.clip) == a.indices.tolist()
    assert (a.clip - b.clip).abs().mean() < 0.02


@pytest.mark.parametrize("decoder", ["nvdec", "dali-cpu"])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("colorspace", ["bt709", "bt2020nc"])
def test_colour_correction_turns_dalis_bt601_into_the_streams_matrix(decoder, full, colorspace):
    from dali_pipes._colour import MATRICES, _dali_nvdec, correction, ycbcr_to_rgb

    m, t = correction(decoder, colorspace, "pc" if full else "tv", "yuv420p")
    applied = _dali_nvdec(full) if decoder == "nvdec" else ycbcr_to_rgb(*MATRICES["bt470bg"], full)
    wanted = ycbcr_to_rgb(*MATRICES[colorspace], full)
    yuv = np.random.default_rng(0).uniform([40, 100, 100], [200, 156, 156], (50, 3))
    dali_rgb = yuv @ applied[0].T + applied[1]
    np.testing.assert_allclose(dali_rgb @ m.T + t, yuv @ wanted[0].T + wanted[1], atol=2e-3)
    grey = m @ np.array([90.0, 90.0, 90.0]) + t  # a grey stays grey (DALI's 1.164 is 255/219 rounded)
    assert np.ptp(grey) < 1e-3 and abs(grey[0] - 90) < 0.05
    for untouched in ("", "bt470bg", "smpte170m", "unknown"):  # what DALI already does: no pass at all
        assert correction(decoder, untouched, "pc" if full else "tv", "yuv420p") is None


def test_colour_correction_on_a_normalized_clip_is_the_rgb_map():
    from dali_pipes._colour import correct_normalized, correction

    m, t = correction("nvdec", "bt709", "tv", "yuv420p")
    t = t + np.float32([3.0, -2.0, 1.0])  # an offset too
    rgb = torch.rand(4, 3, 8, 8) * 255
    clip = (rgb / 255 - MEAN) / STD
    correct_normalized(clip, m, t, IMAGENET.mean, IMAGENET.std)
    want = torch.einsum("ij,tjhw->tihw", torch.from_numpy(m), rgb) + torch.from_numpy(t).view(1, 3, 1, 1)
    torch.testing.assert_close((clip * STD + MEAN) * 255, want, atol=2e-3, rtol=0)


@pytest.mark.parametrize(("colorspace", "color_range"), [("bt709", "tv"), ("bt709", "pc"), ("", "pc"), ("", "")])
def test_the_cpu_decode_gives_the_colours_the_stream_is_tagged_with(tmp_path, colorspace, color_range):
    """DALI's CPU decoder reads every stream as BT.601: a BT.709 WebM (YouTube's) came out up
    to 22/255 off what players and the PyAV front show; such streams now decode on PyAV."""
    path = write_colour_quadrants(tmp_path / "c.webm", "vp9", colorspace, color_range)
    spec = SamplingSpec(strategy="uniform", frames=2)
    (auto,) = run(loader(cpu_decoder="auto"), [path], spec)
    (pyav,) = run(loader(cpu_decoder="pyav"), [path], spec)
    assert (auto.front, pyav.front) == ("pyav" if colorspace == "bt709" else "dali", "pyav")
    truth = torch.tensor(QUADRANT_COLOURS, dtype=torch.float32)
    assert (quadrant_colours(pyav.clip) - truth).abs().max() < 4
    assert (quadrant_colours(auto.clip) - quadrant_colours(pyav.clip)).abs().max() < 3


@pytest.mark.parametrize("color_range", ["tv", "pc"])
def test_saturated_bt709_colours_are_exact_on_the_cpu(tmp_path, color_range):
    """DALI's CPU decoder clips its BT.601 reading of a BT.709 stream before any correction
    can undo it (saturated green came out at 0.855 of full): such streams decode on PyAV."""
    saturated = [(0, 255, 0), (255, 0, 0), (0, 0, 255), (255, 255, 0)]
    path = write_colour_quadrants(tmp_path / "s.webm", "vp9", "bt709", color_range, colours=saturated)
    (result,) = run(loader(cpu_decoder="auto"), [path], SamplingSpec(strategy="uniform", frames=2))
    assert result.front == "pyav" and "converts its colours as tagged" in result.note
    assert (quadrant_colours(result.clip) - torch.tensor(saturated, dtype=torch.float32)).abs().max() < 6


def test_flip_mirrors_width(videos):
    path = videos(codec="h264", num_frames=30)
    spec = SamplingSpec(strategy="uniform", frames=4, augment=True)
    relpath = next(f"v{i}.mp4" for i in range(100) if spec.plan(30, 25, f"v{i}.mp4")[1])
    ld = loader()
    (r,) = [x for b in ld.load([(str(path), relpath)], spec) for x in b]
    assert r.flip
    ref = reference_clip(path, r.indices, flip=True)
    assert (r.clip - ref).abs().mean() < 0.02
    assert read_indices(r.clip.flip(-1)) == r.indices.tolist()


def test_rgb_channel_order(videos):
    path = videos(codec="vp9", num_frames=10, width=96, height=96)
    (r,) = run(loader(), [path], SamplingSpec(frames=1))
    rgb = (r.clip[0] * STD + MEAN).permute(1, 2, 0)  # [S, S, 3]
    q = SIZE // 4
    red, green, blue = rgb[3 * q + q // 2, q // 2], rgb[3 * q + q // 2, q + q // 2], rgb[3 * q + q // 2, 2 * q + q // 2]
    assert red.argmax() == 0 and green.argmax() == 1 and blue.argmax() == 2


def test_batches_never_mix_inputs(videos):
    """Many videos of different lengths through small batches: each output is its own."""
    specs = [dict(codec=c, num_frames=n) for c in ("vp9", "mjpeg", "h264") for n in (11, 23, 37)]
    paths = [videos(**s) for s in specs]
    spec = SamplingSpec(strategy="uniform", frames=6)
    ld = loader(max_batch=2)
    results = run(ld, paths, spec)
    for r, s in zip(results, specs, strict=True):
        assert read_indices(r.clip) == spec.plan(s["num_frames"], 25, r.relpath)[0].tolist()
    assert dict(ld.stats.batch_sizes) == {2: 4, 1: 1}


def test_bad_files_are_reported_and_others_still_decode(videos, bad_files):
    good = videos(codec="vp9", num_frames=20)
    paths = [good, *bad_files.values(), videos(codec="h264", num_frames=20)]
    results = run(loader(max_batch=2), paths, SamplingSpec(frames=4))
    assert results[0].ok and results[-1].ok
    reasons = {r.relpath: r.error.reason for r in results[1:-1]}
    assert set(reasons) == set(bad_files)
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["audio_only.mka"] == "no video stream in container"
    assert reasons["notes"].startswith("not a video") or reasons["notes"].startswith("not a readable")
    assert reasons["image.mp4"].startswith("not a video")
    assert reasons["truncated.webm"].startswith("truncated:")
    for r in results[1:-1]:
        assert str(r.error).startswith(r.path + ": ") and "\n" not in str(r.error)


def test_decoder_failure_falls_back_to_pyav(videos, monkeypatch):
    """A stream the DALI decoder rejects is decoded by PyAV instead (the NVDEC-reject path)."""
    path = videos(codec="vp9", num_frames=30)
    ld = loader()
    calls = []

    def reject(items):
        calls.append(len(items))
        raise RuntimeError("simulated: decoder rejected the stream")

    monkeypatch.setattr(ld.runner, "_feed_dali", reject)
    (r,) = run(ld, [path], SamplingSpec(frames=5))
    assert r.ok and r.front == "pyav" and calls == [1]
    assert read_indices(r.clip) == r.indices.tolist()
    assert ld.stats.fallbacks and "simulated" in ld.stats.fallbacks[0]


def test_cpu_pipeline_builds_without_gpu():
    pipe = build_pipeline("pyav", device="cpu", batch_size=1, size=8, mean=IMAGENET.mean, std=IMAGENET.std)
    frames = np.zeros((2, 10, 12, 3), np.uint8)
    pipe.feed_input("frames", [frames], layout="FHWC")
    pipe.feed_input("flip", [np.int32(0)])
    (out,) = pipe.run()
    arr = np.array(out.as_tensor())
    assert arr.shape == (1, 2, 3, 8, 8)
    np.testing.assert_allclose(arr[0, 0, :, 0, 0], -np.array(IMAGENET.mean) / np.array(IMAGENET.std), rtol=1e-5)


# Sizes NVDEC takes for each codec (HEVC needs >= 144x144, VP9/AV1 >= 128x128).
NVDEC_SIZES = {"h264": (96, 64), "hevc": (160, 144), "vp9": (160, 128)}


@pytest.mark.needs_cuda
@pytest.mark.parametrize(
    ("codec", "pix_fmt"),
    [("h264", None), ("hevc", None), ("vp9", None), ("hevc", "yuv420p10le")],
    ids=["h264", "hevc", "vp9", "hevc-10bit"],
)
def test_nvdec_matches_cpu_path(videos, codec, pix_fmt):
    width, height = NVDEC_SIZES[codec]
    path = videos(codec=codec, num_frames=40, width=width, height=height, pix_fmt=pix_fmt)
    spec = SamplingSpec(strategy="uniform", frames=10)
    (g,) = run(loader(device="gpu"), [path], spec)
    (c,) = run(loader(), [path], spec)
    assert g.ok and c.ok, (g.error, c.error)
    if pix_fmt and g.front != "dali":  # 10-bit routed to the CPU front: say why, still exact
        assert g.note
    else:
        assert g.front == "dali" and not g.note, g.note
    assert g.clip.is_cuda
    assert read_indices(g.clip) == read_indices(c.clip) == c.indices.tolist()
    assert (g.clip.cpu() - c.clip).abs().mean() < 0.03


@pytest.mark.needs_cuda
@pytest.mark.parametrize(("codec", "colorspace", "color_range"), [("h264", "bt709", "tv"), ("h264", "bt709", "pc"),
                                                                 ("vp9", "bt709", "tv"), ("h264", "", "pc")])
def test_nvdec_gives_the_colours_the_stream_is_tagged_with(tmp_path, codec, colorspace, color_range):
    """DALI's NVDEC kernel converts with BT.601 only: vcp corrects the clips of BT.709 streams."""
    path = write_colour_quadrants(tmp_path / f"c{CODECS[codec][1]}", codec, colorspace, color_range)
    spec = SamplingSpec(strategy="uniform", frames=2)
    (g,) = run(loader(device="gpu"), [path], spec)
    (c,) = run(loader(cpu_decoder="pyav"), [path], spec)
    assert g.front == "dali" and c.front == "pyav", (g.note, g.error)
    truth = torch.tensor(QUADRANT_COLOURS, dtype=torch.float32)
    assert (quadrant_colours(c.clip) - truth).abs().max() < 4
    assert (quadrant_colours(g.clip.cpu()) - quadrant_colours(c.clip)).abs().max() < 3


@pytest.mark.needs_cuda
@pytest.mark.parametrize("codec", ["h264", "vp9"])
def test_a_frame_size_change_on_the_gpu_keeps_every_frame(tmp_path, codec):
    """Whatever NVDEC makes of a size change (an error falls back to PyAV), the frames are the file's."""
    first, then = NVDEC_SIZES[codec], (NVDEC_SIZES[codec][0] + 32, NVDEC_SIZES[codec][1] + 32)
    path = write_size_change(tmp_path / f"s.{'ts' if codec == 'h264' else 'webm'}", codec, first, then)
    (g,) = run(loader(device="gpu"), [path], SamplingSpec(strategy="uniform", frames=8))
    assert g.ok, g.error
    assert read_indices(g.clip) == [i if i < 30 else i - 30 for i in g.indices.tolist()]


@pytest.mark.needs_cuda
@pytest.mark.parametrize(("codec", "size"), [("mjpeg", (96, 64)), ("hevc", (96, 64)), ("vp9", (96, 64))])
def test_streams_nvdec_cannot_take_decode_on_cpu_first_time_and_normalize_on_gpu(videos, codec, size):
    path = videos(codec=codec, num_frames=30, width=size[0], height=size[1])
    ld = loader(device="gpu")
    (r,) = run(ld, [path], SamplingSpec(frames=8))
    assert r.ok and r.front == "pyav" and r.clip.is_cuda
    assert "DALI's NVDEC decoder does not take mjpeg" in r.note if codec == "mjpeg" else "below NVDEC's minimum" in r.note
    assert "dali" not in ld.runner.pipes  # routed before decoding: no failed GPU run
    assert read_indices(r.clip) == r.indices.tolist()


@pytest.mark.needs_cuda
def test_nvdec_caps_are_read_from_the_card():
    from dali_pipes._nvdec import CapsTable

    table = CapsTable(0)
    caps = table.get("h264", "420", 8)
    assert table.from_card and caps.source == "card" and caps.supported
    assert caps.min_width <= 96 and caps.max_width >= 1920 and caps.engines >= 1
    hevc = table.get("hevc", "420", 8)
    assert hevc.source == "card" and hevc.supported and hevc.min_width > 96  # why 96x64 HEVC is routed to the CPU


@pytest.mark.needs_cuda
def test_gpu_without_nvdec_decodes_on_cpu_and_normalizes_on_gpu(videos, monkeypatch):
    path = videos(codec="h264", num_frames=40)
    ld = loader(device="gpu")
    ld.router.nvdec_usable = False  # as on a MIG slice without NVDEC
    (r,) = run(ld, [path], SamplingSpec(frames=8))
    assert r.front == "pyav" and r.clip.is_cuda and r.note == "h264 96x64 yuv420p: no usable NVDEC on this GPU"
    assert read_indices(r.clip) == r.indices.tolist()


def test_parallel_pipelines_give_the_same_results_in_order(videos):
    specs = [dict(codec=c, num_frames=n) for c in ("vp9", "h264", "mjpeg") for n in (13, 29)] + [dict(codec="hevc", num_frames=17)]
    paths = [videos(**s) for s in specs]
    spec = SamplingSpec(strategy="segment", frames=6)
    one = run(loader(max_batch=2), paths, spec)
    ld = loader(max_batch=2, pipelines=3)
    many = run(ld, paths, spec)
    assert [r.path for r in many] == [str(p) for p in paths]
    for a, b in zip(one, many, strict=True):
        assert a.indices.tolist() == b.indices.tolist() and a.front == b.front
        assert torch.equal(a.clip, b.clip)
    assert sum(n * k for n, k in ld.stats.batch_sizes.items()) == len(paths)
    assert len(ld.workers) == 3
    # each worker drove its own pipelines: chunk c of 2 files went to worker c % 3
    assert [sorted(w.runner.pipes) for w in ld.workers] == [["dali", "pyav"], ["pyav"], ["dali"]]


def test_gpu_mode_gives_up_per_kind_of_stream_not_globally(monkeypatch):
    """Three rejections of one kind of stream (codec, chroma, depth, size class) with no
    success send that kind to the CPU front; other kinds still go to NVDEC."""
    from dali_pipes import ClipResult, VideoInfo
    from dali_pipes._nvdec import CapsTable

    ld = loader(max_batch=1, caps=CapsTable())  # the documented table: no GPU needed
    ld.device = ld.runner.device = ld.router.device = "gpu"  # pretend: only the DALI front is exercised
    ld.router.nvdec_usable = True
    attempts = []

    def decode(items):
        attempts.append(items[0].info.codec)
        if items[0].info.codec == "h264":
            raise RuntimeError("Critical error in pipeline:\nError in MIXED operator\nencountered:\n\nsimulated: stream rejected\nC++ context: [x]")
        return True

    monkeypatch.setattr(ld.runner, "_feed_dali", decode)

    def item(codec, size):
        info = VideoInfo("x", codec, size[0], size[1], 25.0, 30, "yuv420p", 30)
        return ClipResult(path="x", relpath=f"{codec}.mp4", info=info, front="dali")

    small = [item("h264", (96, 64)) for _ in range(5)]
    for r in small[:3]:
        ld.runner._run_dali([r])
    assert attempts == ["h264"] * 3 and all(r.front == "pyav" for r in small[:3])
    assert small[0].note == "h264 96x64 yuv420p: DALI's decoder rejected it (simulated: stream rejected)"
    assert ld.router.route(small[3].info).front == "pyav"  # that kind: CPU first time from now on
    assert ld.router.route(small[3].info).reason == "h264 96x64 yuv420p: NVDEC rejected every stream of this kind so far"
    hevc = item("hevc", (1280, 720))
    assert ld.router.route(hevc.info).front == "dali"  # another kind is not punished
    ld.runner._run_dali([hevc])
    assert attempts[-1] == "hevc" and hevc.front == "dali" and ld.router.nvdec_usable
    big = item("h264", (1920, 1080))
    assert ld.router.route(big.info).front == "dali"  # same codec, other size class: still NVDEC
    assert any("NVDEC rejected 3 h264 420 8-bit streams up to 256px" in f for f in ld.stats.fallbacks)


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "size", "front", "reason"),
    [
        ("h264", "yuv420p", (96, 64), "dali", ""),
        ("hevc", "yuv420p", (1280, 720), "dali", ""),
        ("hevc", "yuv420p10le", (1280, 720), "dali", ""),
        ("av1", "yuv420p", (640, 360), "dali", ""),
        ("mjpeg", "yuvj420p", (640, 360), "pyav", "mjpeg 640x360 yuvj420p: DALI's NVDEC decoder does not take mjpeg"),
        ("hevc", "yuv420p", (96, 64), "pyav", "hevc 96x64 yuv420p: below NVDEC's minimum 144x144 for hevc (table)"),
        ("vp9", "yuv420p", (96, 64), "pyav", "vp9 96x64 yuv420p: below NVDEC's minimum 128x128 for vp9 (table)"),
        ("h264", "yuv420p", (4112, 2160), "pyav", "h264 4112x2160 yuv420p: above NVDEC's maximum 4096x4096 for h264 (table)"),
        ("h264", "yuv420p10le", (640, 360), "pyav", "h264 640x360 yuv420p10le: this NVDEC does not decode h264 10-bit (table)"),
        ("h264", "yuv444p", (640, 360), "pyav", "h264 640x360 yuv444p: NVDEC through DALI takes 4:2:0 only"),
        ("prores", "yuv422p10le", (640, 360), "pyav", "prores 640x360 yuv422p10le: DALI's NVDEC decoder does not take prores"),
    ],
)
def test_routing_rule_on_the_documented_caps(codec, pix_fmt, size, front, reason):
    from dali_pipes._nvdec import CapsTable, route

    r = route(codec, pix_fmt, *size, device="gpu", caps=CapsTable())
    assert (r.front, r.reason) == (front, reason)


def test_routing_rule_cpu_mode_and_no_nvdec():
    from dali_pipes._nvdec import CapsTable, Route, route, stream_key

    assert route("vp9", "yuv420p", 96, 64, device="cpu").front == "dali"
    assert route("mjpeg", "yuvj420p", 96, 64, device="cpu").front == "dali"
    assert route("h264", "yuv420p", 96, 64, device="cpu").front == "pyav"
    assert route("vp9", "yuv420p", 96, 64, device="cpu", cpu_decoder="pyav").front == "pyav"
    assert route("h264", "yuv420p", 640, 360, device="gpu", caps=CapsTable(), nvdec_usable=False).reason == (
        "h264 640x360 yuv420p: no usable NVDEC on this GPU")
    blocked = frozenset({stream_key("h264", "yuv420p", 640, 360)})
    assert route("h264", "yuv420p", 640, 360, device="gpu", caps=CapsTable(), blocked=blocked).front == "pyav"
    assert route("h264", "yuv420p", 1920, 1080, device="gpu", caps=CapsTable(), blocked=blocked).front == "dali"
    # a file where DALI might pick another stream than the probe's goes to PyAV, on both devices
    note = "2 video streams: #1 decoded, the one players show"
    for device in ("cpu", "gpu"):
        assert route("vp9", "yuv420p", 640, 360, device=device, caps=CapsTable(), needs_pyav=note) == (
            Route("pyav", f"vp9 640x360 yuv420p: {note}"))


def test_dali_error_line_is_one_clean_line():
    from dali_pipes._nvdec import dali_error_line

    exc = RuntimeError(
        "Critical error in pipeline:\nError in MIXED operator `nvidia.dali.fn.decoders.video`,\nwhich was used in the "
        "pipeline definition with the following traceback:\n\n  File \"x.py\", line 1, in graph\n    frames = ...\n\n"
        "encountered:\n\nUnsupported video codec: 12\nC++ context: [/opt/dali/x.cc:10]\n\nCurrent pipeline object is no longer valid."
    )
    assert dali_error_line(exc) == "Unsupported video codec: 12"


@pytest.mark.parametrize(
    "kind",
    [
        dict(codec="h264", options={"preset": "medium", "bf": "3", "b_strategy": "0"}),  # B-frames (reordered)
        dict(codec="hevc", pix_fmt="yuv420p10le"),  # 10-bit
        dict(codec="h264", pix_fmt="yuv444p"),  # 4:4:4 (NVDEC rejects: CPU decode on GPU too)
        dict(codec="vp9", options={"g": "5"}),  # frequent keyframes
    ],
    ids=["h264-bframes", "hevc-10bit", "h264-444", "vp9-gop5"],
)
def test_frame_exact_on_harder_streams(videos, kind):
    path = videos(num_frames=57, **kind)
    spec = SamplingSpec(strategy="segment", frames=10)
    (r,) = run(loader(), [path], spec)
    assert r.ok, r.error
    assert r.info.num_frames == 57
    assert read_indices(r.clip) == r.indices.tolist() == spec.plan(57, 25, r.relpath)[0].tolist()
    ref = reference_clip(path, r.indices)
    assert (r.clip - ref).abs().mean() < 0.03


def test_gpu_routing_sends_what_nvdec_rejects_to_the_cpu_front(videos):
    from dali_pipes import probe
    from dali_pipes._nvdec import CapsTable

    ld = loader(caps=CapsTable())
    ld.router.device, ld.router.nvdec_usable = "gpu", True
    assert ld.router.route(probe(videos(codec="h264", num_frames=10))).front == "dali"
    assert ld.router.route(probe(videos(codec="h264", num_frames=10, pix_fmt="yuv444p"))).front == "pyav"
    assert ld.router.route(probe(videos(codec="mjpeg", num_frames=10))).front == "pyav"
    assert ld.router.route(probe(videos(codec="hevc", num_frames=10, pix_fmt="yuv420p10le"))).front == "pyav"  # 96x64: below the minimum


def test_frame_pool_reuses_and_grows_per_slot():
    from dali_pipes._buffers import FramePool

    pool = FramePool()
    a = pool.take(0, (2, 4, 6, 3))
    b = pool.take(0, (1, 4, 6, 3))  # smaller: the same memory
    assert b.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    c = pool.take(1, (1, 4, 6, 3))  # another slot: other memory
    assert not np.shares_memory(c, a)
    d = pool.take(0, (3, 4, 6, 3))  # larger: grown
    assert d.shape == (3, 4, 6, 3) and d.flags.c_contiguous


def test_reused_decode_buffers_give_the_clips_of_fresh_ones(videos):
    """Slot 0 holds a larger H.264 clip's frames when the smaller HEVC clip decodes into it."""
    big, small = videos(codec="h264", num_frames=40, width=128, height=96), videos(codec="hevc", num_frames=20)
    spec = SamplingSpec(frames=8)
    ld = loader(max_batch=1)
    reused = run(ld, [big, small], spec)[1]
    fresh = run(loader(max_batch=1), [small], spec)[0]
    assert torch.equal(reused.clip, fresh.clip)
    assert read_indices(reused.clip) == reused.indices.tolist()


def test_output_pool_reuses_released_leases_and_forgets_dropped_ones():
    import gc

    from dali_pipes._buffers import OutputPool

    pool = OutputPool()
    a = pool.lease(100, torch.float32)
    buf = a.buf
    a.release()
    a.release()  # once only
    assert pool.leased == 0
    b = pool.lease(60, torch.float32)
    assert b.buf is buf  # released: the same memory serves a smaller request
    c = pool.lease(200, torch.float32)  # larger: new memory
    assert c.buf is not buf and c.buf.numel() == 200 and pool.leased == 2
    kept = c.buf
    del b, c
    gc.collect()
    assert pool.leased == 0  # dropped: the leases ended...
    assert pool.lease(10, torch.float32).buf is not kept  # ...and nothing a holder may still read is reused


def test_batches_used_in_with_reuse_memory_and_give_the_same_clips(videos):
    paths = [videos(codec="vp9", num_frames=n) for n in (20, 24, 28)]
    spec = SamplingSpec(frames=8)
    plain = run(loader(max_batch=1), paths, spec)
    ld, ptrs, clips = loader(max_batch=1), [], []
    for batch in ld.load([(str(p), p.name) for p in paths], spec):
        with batch:
            (r,) = batch
            ptrs.append(r.clip._base.data_ptr())
            clips.append(r.clip.clone())
        assert r.clip is None  # the block is over: the clip must not be read again
    assert ptrs[0] == ptrs[1] == ptrs[2]  # one buffer served every batch
    for a, b in zip(plain, clips, strict=True):
        assert torch.equal(a.clip, b)


def lease_in_thread(pool, got: list):
    """Start ``pool.lease`` in a thread; give it 0.3 s; return the thread."""
    import threading

    taker = threading.Thread(target=lambda: got.append(pool.lease(10, torch.float32)), daemon=True)
    taker.start()
    taker.join(timeout=0.3)
    return taker


def test_output_pool_limit_waits_for_a_release_unless_the_consumer_waits():
    from dali_pipes._buffers import OutputPool

    pool = OutputPool(limit=1)
    a = pool.lease(10, torch.float32)
    got = []
    taker = lease_in_thread(pool, got)
    assert taker.is_alive() and not got  # one lease out: the second waits
    a.release()
    taker.join(timeout=5)
    assert got and got[0].buf is a.buf  # freed by the release, and the same memory
    waiter = lease_in_thread(pool, got)
    assert waiter.is_alive()
    pool.waive(True)  # the consumer now waits for this producer: it must not wait back
    waiter.join(timeout=5)
    assert len(got) == 2 and got[1].buf is not got[0].buf


def test_decoding_ahead_holds_ahead_plus_one_buffers_and_gives_the_same_clips(videos):
    """Mixed fronts in one batch share one leased buffer; a consumer using ``with`` and one
    batch decoded ahead: two buffers serve the whole run."""
    paths = [videos(codec=c, num_frames=n) for c, n in (("vp9", 20), ("h264", 24), ("mjpeg", 16), ("hevc", 28))] * 2
    spec = SamplingSpec(frames=8)
    plain = run(loader(max_batch=2), paths, spec)
    ld = loader(max_batch=2)
    bases, out = set(), []
    for batch in ld.load([(str(p), p.name) for p in paths], spec, ahead=1):
        with batch:
            assert len({id(r.clip._base) for r in batch}) == 1  # one buffer for the batch's two fronts
            bases.add(batch[0].clip._base.data_ptr())
            out.extend(r.clip.clone() for r in batch)
    assert len(bases) <= 2 and len(ld.pool._free) <= 2
    for a, b in zip(plain, out, strict=True):
        assert torch.equal(a.clip, b)


@pytest.mark.parametrize("how", ["raises", "keeps every batch"])
def test_no_consumer_can_hang_the_decoder_running_ahead(videos, how):
    """A consumer that stops without releasing, or holds every batch (``list(...)``), while
    the producer waits for a buffer: the loader must neither hang nor lose a batch."""
    import threading

    paths = [videos(codec="vp9", num_frames=n) for n in (20, 24, 28, 32)]
    ld = loader(max_batch=1)
    out: list = []

    def consume():
        items = [(str(p), p.name) for p in paths]
        try:
            if how == "raises":
                for _batch in ld.load(items, SamplingSpec(frames=8), ahead=1):
                    raise RuntimeError("disk full")
            out.extend(ld.load(items, SamplingSpec(frames=8), ahead=1))
        except RuntimeError:
            out.append("stopped")

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive()
    if how == "raises":
        assert out == ["stopped"]
    else:
        assert [b[0].path for b in out] == [str(p) for p in paths] and all(b[0].clip is not None for b in out)
        assert len({b[0].clip._base.data_ptr() for b in out}) == 4  # nothing held was handed out again


def test_probing_ahead_in_processes_gives_the_same_results(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 20)
    paths = [videos(codec="h264", num_frames=13), bad, videos(codec="vp9", num_frames=21), videos(codec="mjpeg", num_frames=9)]
    spec = SamplingSpec(strategy="segment", frames=6)
    inline = run(loader(max_batch=2, probe_workers=0), paths, spec)
    for kwargs in (dict(probe_workers=2), dict(probe_workers=2, pipelines=2)):
        ld = loader(max_batch=2, **kwargs)
        ahead = run(ld, paths, spec)
        ld.close()
        assert [r.path for r in ahead] == [str(p) for p in paths]
        for a, b in zip(inline, ahead, strict=True):
            assert a.ok == b.ok and (a.error and a.error.reason) == (b.error and b.error.reason)
            if a.ok:
                assert a.info == b.info and a.indices.tolist() == b.indices.tolist() and torch.equal(a.clip, b.clip)


def test_default_pipelines_follow_the_card_up_to_the_measured_best():
    from dali_pipes import default_pipelines

    assert [default_pipelines(n) for n in (0, 1, 2, 3, 4, 7, 16)] == [1, 1, 2, 3, 4, 4, 4]
    assert loader(pipelines=None).pipelines == 1  # CPU: no NVDEC engines known
