"""Running one planned batch through DALI: decode on its front, resize, normalize, orient.

Two decode fronts feed one post-decode graph (``_graph.build_pipeline``):

* ``"dali"``: encoded bytes + the sampled indices go to ``fn.decoders.video``
  (``device="mixed"`` = NVDEC on the GPU, ``"cpu"`` = libavcodec for VP8/VP9/MJPEG).
* ``"pyav"``: frames decoded by PyAV on the CPU (codecs DALI's CPU decoder lacks,
  streams NVDEC rejects, GPUs without NVDEC) enter through ``external_source``; on the
  GPU they are copied up and resized/normalized there.

Pipelines run synchronously with ``feed_input`` so an output can never belong to another
input than the one just fed (the prefetch trap of ``source=`` callbacks). A batch DALI's
decoder rejects is retried file by file; a file still rejected goes through PyAV.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ._buffers import Batch, FramePool, Lease, OutputPool
from ._colour import correct_normalized, correction
from ._graph import Front, build_pipeline, feed_geometry, views_frame_major
from ._nvdec import dali_error_line
from ._plan import ClipResult, LoaderStats, Router, sample_segment
from ._probe import VideoError
from ._pyav import FrameCountMismatch, decode_frames
from ._samplers import SamplingSpec


def _graph_flip(item: ClipResult) -> np.int32:
    """The graph mirrors unrotated frames; a rotated video is flipped after its rotation."""
    return np.int32(item.flip and not item.info.rotation)


def _orient(item: ClipResult) -> None:
    """Turn the clip as players do (the display matrix), then apply the augmentation flip.

    The clip is S x S, so the turned frames overwrite it in place (a leased buffer stays
    the clip's memory). Resize then rotate equals rotate then resize: the resize is
    separable and the output square.
    """
    import torch

    clip = item.clip
    turned = torch.rot90(clip, item.info.rotation // 90, dims=(-2, -1))
    if item.flip:
        turned = turned.flip(-1)
    clip.copy_(turned.contiguous())


class BatchRunner:
    """Owns one set of DALI pipelines (one per front) and runs planned batches through them."""

    def __init__(
        self, *, router: Router, stats: LoaderStats, pool: OutputPool, device: str, device_id: int,
        max_batch: int, size: int, mean, std, num_threads: int | None, geometry=None,
    ):
        self.router, self.stats, self.pool = router, stats, pool
        self.device, self.device_id, self.max_batch = device, device_id, max_batch
        self._graph = dict(size=size, mean=mean, std=std, num_threads=num_threads, geometry=geometry)
        self.pipes: dict[Front, object] = {}
        self._frame_pool = FramePool()
        self._lease: tuple[Lease, int] | None = None  # the batch in progress: its buffer, elements used
        self._stream = None  # GPU: the CUDA stream DALI's outputs are copied out on

    def run(self, batch: list[ClipResult], spec: SamplingSpec) -> Batch:
        good = [r for r in batch if r.ok]
        if good:
            self.stats.batch_sizes[len(good)] += 1
        try:
            dali_items = [r for r in good if r.front == "dali"]
            if dali_items:
                self._run_dali(dali_items)
            frame_items = [r for r in good if r.front == "pyav"]
            if frame_items:
                self._run_frames(frame_items, spec)
            lease = self._lease[0] if self._lease else None
        finally:
            self._lease = None  # the next batch takes a buffer of its own
        views = self._graph["geometry"].views if self._graph["geometry"] is not None else 1
        for r in good:
            if r.ok and r.info.rotation:
                _orient(r)
            if r.ok and views > 1:
                r.clip = views_frame_major(r.clip, views, self._graph["geometry"].flipped())
        return Batch(batch, lease)

    # -- pipelines -------------------------------------------------------------------
    def _pipe(self, front: Front):
        if front not in self.pipes:
            self.pipes[front] = build_pipeline(
                front, device=self.device, batch_size=self.max_batch, device_id=self.device_id,
                **self._graph,  # num_threads None: all cores (a share per pipeline measured slower)
            )
        return self.pipes[front]

    def _outputs(self, pipe, n: int) -> list:
        """Run ``pipe``; its batch as torch tensors owned by torch (one copy, same device).

        DALI reuses its output buffers on the next run, which the prefetch thread may start
        while these clips are still being consumed, so the DLPack view is copied at once:
        device-to-device on the GPU (no host round trip, :meth:`_copy_out_gpu`); on the CPU into the batch's leased
        buffer (one per batch of ``max_batch`` clips, taken at the first copy-out so that
        DALI's decode of this batch has already run while the lease may wait).
        """
        import torch

        (out,) = pipe.run()
        dense = out.as_tensor()
        if self.device == "gpu":
            with torch.cuda.device(self.device_id):
                return list(self._copy_out_gpu(dense).unbind(0))
        src = torch.from_dlpack(dense)
        if self._lease is None:
            self._lease = (self.pool.lease(src.numel(), src.dtype, capacity=src.numel() // n * self.max_batch), 0)
        lease, used = self._lease
        assert used + src.numel() <= lease.buf.numel(), "more clips in a batch than max_batch"
        clips = lease.buf[used : used + src.numel()].view(src.shape)
        clips.copy_(src)
        self._lease = (lease, used + src.numel())
        return list(clips.unbind(0))

    def _copy_out_gpu(self, dense):
        """DALI's GPU output -> a torch tensor, finished before DALI may reuse its buffer.

        The copy runs on this runner's own stream, not queued behind the consumer's work on
        the default stream (there DALI's next run could overwrite the buffer before the copy
        read it), and this thread waits for just that copy. Consumers use the clips on the
        default stream: the allocator is told so (``record_stream``), so the memory is not
        handed to a later copy while their kernels may still read it.
        """
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream(self.device_id)
        with torch.cuda.stream(self._stream):
            clips = torch.empty(dense.shape(), dtype=torch.float32, device=f"cuda:{self.device_id}")
            try:
                clips.copy_(torch.from_dlpack(dense))  # DALI makes this stream wait for its work
            except (TypeError, RuntimeError, BufferError):  # older DALI: no stream-aware DLPack
                from nvidia.dali.plugin.pytorch import feed_ndarray

                feed_ndarray(dense, clips, cuda_stream=self._stream)
        self._stream.synchronize()
        clips.record_stream(torch.cuda.default_stream(self.device_id))
        return clips

    # -- the DALI decoder front ------------------------------------------------------
    def _run_dali(self, items: list[ClipResult]) -> None:
        if self.device == "gpu" and not self.router.nvdec_usable:
            for item in items:
                item.front, item.note = "pyav", item.note or "no usable NVDEC on this GPU"
            return
        try:
            if self._feed_dali(items) and self.device == "gpu":
                for item in items:
                    self.router.accepted(item.info)
            return
        except Exception as exc:  # noqa: BLE001 - DALI raises RuntimeError for anything
            self.pipes.pop("dali", None)  # a DALI pipeline that raised is no longer valid
            if len(items) == 1:
                if self.device == "gpu":
                    self.router.rejected(items[0].info)
                self._fallback(items[0], exc)
                return
        for item in items:  # isolate the file the decoder rejected
            self._run_dali([item])

    def _feed_dali(self, items: list[ClipResult]) -> bool:
        """Decode ``items`` with DALI's decoder; False when it cannot even be built (no NVDEC)."""
        try:
            pipe = self._pipe("dali")
        except Exception as exc:  # noqa: BLE001 - e.g. no NVDEC on this GPU / MIG slice
            if self.device != "gpu":
                raise
            self.router.nvdec_unusable(dali_error_line(exc))
            for item in items:
                self._fallback(item, exc)
            return False
        encoded = [np.fromfile(item.path, dtype=np.uint8) for item in items]
        pipe.feed_input("encoded", encoded)
        pipe.feed_input("indices", [item.indices.astype(np.int32) for item in items])
        pipe.feed_input("flip", [_graph_flip(item) for item in items])
        self._feed_geometry(pipe, items)
        for item, clip in zip(items, self._outputs(pipe, len(items)), strict=True):
            item.clip = clip
            self._correct_colour(item)
        return True

    def _feed_geometry(self, pipe, items: list[ClipResult]) -> None:
        """A model's recipe: each clip's resize size and crop anchor, planned for its own frame."""
        feed_geometry(pipe, self._graph["geometry"], self.device, [(item.resize_to, item.crop_at) for item in items])

    def _correct_colour(self, item: ClipResult) -> None:
        """DALI's decoder converted with BT.601: give a stream tagged otherwise its own colours."""
        info = item.info
        fix = correction("nvdec" if self.device == "gpu" else "dali-cpu", info.colorspace, info.color_range, info.pix_fmt)
        if fix is not None:
            correct_normalized(item.clip, *fix, self._graph["mean"], self._graph["std"])

    def _fallback(self, item: ClipResult, exc: Exception) -> None:
        """The DALI decoder rejected this file: decode it on the CPU with PyAV instead."""
        info = item.info
        item.note = f"{info.codec} {info.width}x{info.height} {info.pix_fmt}: DALI's decoder rejected it ({dali_error_line(exc)})"
        self.stats.fallbacks.append(f"{item.relpath}: {item.note}")
        item.front = "pyav"
        item.clip = None

    # -- the PyAV front ----------------------------------------------------------------
    def _decode_cpu(self, item: ClipResult, spec: SamplingSpec, slot: int) -> np.ndarray:
        alloc, notes = functools.partial(self._frame_pool.take, slot), []
        decode = functools.partial(decode_frames, item.path, alloc=alloc, stream_index=item.info.stream_index,
                                   skip_packets=item.info.lead_packets, notes=notes, scale_to=item.scale_to)
        try:
            frames = decode(item.indices)
        except FrameCountMismatch as short:
            # The stream decodes fewer frames than it has packets: resample with the real n.
            lost = item.info.num_frames - short.decoded
            note = f"{lost} frame(s) do not decode"
            item.info = dataclasses.replace(
                item.info, frames_missing=item.info.frames_missing + lost,
                warning="; ".join(filter(None, [item.info.warning, note])),
            )
            shorter = dataclasses.replace(item.info, num_frames=short.decoded, frame_times=item.info.frame_times[:short.decoded])
            item.indices, item.flip = sample_segment(spec, shorter, item.relpath, item.segment)
            frames = decode(item.indices)
        if notes:  # e.g. a frame size change
            item.info = dataclasses.replace(item.info, warning="; ".join(filter(None, [item.info.warning, *notes])))
        return frames

    def _run_frames(self, items: list[ClipResult], spec: SamplingSpec) -> None:
        decoded, ready = [], []
        for item in items:
            try:
                decoded.append(self._decode_cpu(item, spec, slot=len(decoded)))
                ready.append(item)
            except (VideoError, FrameCountMismatch) as exc:
                item.error = exc if isinstance(exc, VideoError) else VideoError(item.path, str(exc))
        if not ready:
            return
        pipe = self._pipe("pyav")
        pipe.feed_input("frames", decoded, layout="FHWC")  # read in place (no_copy), see build_pipeline
        pipe.feed_input("flip", [_graph_flip(item) for item in ready])
        self._feed_geometry(pipe, ready)
        for item, clip in zip(ready, self._outputs(pipe, len(ready)), strict=True):
            item.clip = clip
