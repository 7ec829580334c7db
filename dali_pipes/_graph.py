"""The DALI graph: one decode front (DALI's decoder, or frames from PyAV) -> resize -> normalize."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

Device = Literal["cpu", "gpu"]
Front = Literal["dali", "pyav"]


def _resize_normalize(frames, *, size: int, mean, std, flip, geometry=None):
    from nvidia.dali import fn, types

    if geometry is None:  # the S x S square every video is squashed to
        frames = fn.resize(
            frames,
            size=[size, size],
            interp_type=types.INTERP_LINEAR,
            antialias=True,
            dtype=types.FLOAT,
        )
    elif roi_resize(geometry, frames.device):  # a model's recipe, its crop box resized alone (feed_geometry)
        start = fn.external_source(name="roi_start", dtype=types.FLOAT, ndim=1)
        end = fn.external_source(name="roi_end", dtype=types.FLOAT, ndim=1)
        frames = fn.resize(
            frames,
            size=list(geometry.size),
            roi_start=start,
            roi_end=end,
            roi_relative=True,
            interp_type=types.INTERP_CUBIC if geometry.interpolation == "bicubic" else types.INTERP_LINEAR,
            antialias=geometry.antialias,
            dtype=types.FLOAT,
        )
    else:  # a model's recipe: each video to its own (height, width), then the exact crop box
        resize = fn.external_source(name="resize", dtype=types.FLOAT, ndim=1)
        anchor = fn.external_source(name="anchor", dtype=types.INT32, ndim=1 if geometry.views == 1 else 2)
        frames = fn.resize(
            frames,
            size=resize.gpu() if frames.device == "gpu" else resize,
            interp_type=types.INTERP_CUBIC if geometry.interpolation == "bicubic" else types.INTERP_LINEAR,
            antialias=geometry.antialias,
            dtype=types.FLOAT,
        )
        pad = [255.0 * m for m in mean] if geometry.mode == "border" else [0.0, 0.0, 0.0]
        crops = [fn.slice(frames, anchor if geometry.views == 1 else anchor[v], list(geometry.size), axis_names="HW",
                          out_of_bounds_policy="pad", fill_values=pad) for v in range(geometry.views)]
        # several views: [V * F] frames, view after view (mirrored and put frame-major after the run: views_frame_major)
        frames = crops[0] if geometry.views == 1 else fn.cat(*crops, axis=0)
    return fn.crop_mirror_normalize(
        frames,
        dtype=types.FLOAT,
        output_layout="FCHW",
        mean=[255.0 * m for m in mean],
        std=[255.0 * s for s in std],
        mirror=flip,
    )


def roi_resize(geometry, device: str) -> bool:
    """On the CPU, a recipe whose one crop box lies inside every resized frame resizes only
    that box (:meth:`~dali_pipes.Geometry.roi`): the same samples as resizing the whole frame
    and cropping (float rounding of the filter's weights apart: at most 4e-4 after
    normalization), at half the work or less. Resizing dominates the CPU graph; the card
    keeps the whole-frame resize."""
    return geometry is not None and device == "cpu" and geometry.crop_inside()


def feed_geometry(pipe, geometry, device: str, placed) -> None:
    """Each clip's ``(resize_to, crop_at)`` in ``placed`` (planned for its own frame) fed to a
    recipe's graph; nothing without a recipe."""
    if geometry is None:
        return
    if roi_resize(geometry, device):
        boxes = [geometry.roi(resize_to, crop_at) for resize_to, crop_at in placed]
        pipe.feed_input("roi_start", [start for start, _ in boxes])
        pipe.feed_input("roi_end", [end for _, end in boxes])
    else:
        pipe.feed_input("resize", [np.array(resize_to, np.float32) for resize_to, _ in placed])
        pipe.feed_input("anchor", [np.asarray(crop_at, np.int32) for _, crop_at in placed])


def views_frame_major(clip, views: int, flipped: range):
    """A several-view clip as the graph gives it, ``[V * F, 3, h, w]`` view after view, ->
    ``[F * V, 3, h, w]`` frame after frame, the ``flipped`` views mirrored (after any
    rotation: a mirror is the frame as players show it, mirrored)."""
    if views == 1:
        return clip
    out = clip.view(views, -1, *clip.shape[1:])
    if len(flipped):
        out[flipped.start:flipped.stop] = out[flipped.start:flipped.stop].flip(-1)
    return out.transpose(0, 1).reshape(-1, *clip.shape[1:])


def build_pipeline(
    front: Front,
    *,
    device: Device,
    batch_size: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    num_threads: int | None = None,
    device_id: int | None = None,
    geometry=None,
):
    """Build (and ``build()``) one DALI pipeline for ``front`` on ``device``; with a
    :class:`~dali_pipes.Geometry`, each clip's resize size and crop anchor are fed per run."""
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads or os.cpu_count() or 1,
        device_id=device_id if device == "gpu" else None,
        exec_pipelined=False,
        exec_async=False,
        prefetch_queue_depth=1,
    )
    def graph():
        flip = fn.external_source(name="flip", dtype=types.INT32, ndim=0)
        if front == "dali":
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            indices = fn.external_source(name="indices", dtype=types.INT32, ndim=1)
            frames = fn.decoders.video(
                encoded,
                frames=indices,
                pad_mode="none",
                device="mixed" if device == "gpu" else "cpu",
            )
        else:
            # no_copy: the caller's buffers are read in place; they are not refilled before the
            # (synchronous, non-pipelined) run that reads them has returned.
            frames = fn.external_source(name="frames", dtype=types.UINT8, ndim=4, layout="FHWC", no_copy=True)
            if device == "gpu":
                frames = frames.gpu()
        return _resize_normalize(frames, size=size, mean=mean, std=std, flip=flip, geometry=geometry)

    pipe = graph()
    pipe.build()
    return pipe
