"""The frozen backbone over frames: upload, normalize, forward (docs/gpu.md for the CUDA path)."""

from __future__ import annotations

import functools
import sys

import torch

from backbones.module import Backbone
from backbones.spec import IMAGENET, InputSpec
from vcp.stages.folding import cast_weights_once, fused, has_batchnorm
from vcp.stages.multiscale import video_rows
from vcp.stages.recipe import StoredRecipe
from vcp.stages.settings import PRECISIONS, ExtractConfig

UPLOAD_SLOTS = 3  # pinned staging buffers for host->device copies: one filling, two in flight


class NonFiniteClip(Exception):
    """A stored clip holds NaN or Inf: its whole group is rejected."""


class FrameEncoder:
    """Runs the frozen backbone over frames: inference_mode, channels_last, autocast.

    :meth:`prepare` puts a clip on the device, checks it is finite (without waiting) and
    normalizes it as the backbone expects; :meth:`forward` runs the network on a batch of
    prepared frames. On CUDA, host clips go up through a ring of pinned buffers on a copy
    stream, so the next clip's upload overlaps this batch's compute; cuDNN picks its
    algorithms for the fixed batch shape (``cudnn.benchmark``).
    """

    def __init__(self, model: torch.nn.Module, config: ExtractConfig, *, owned: bool = False):
        """``owned``: the model is vcp's own (loaded for this run, nobody else holds it): once
        folded, its unfolded weights are let go (ResNet-50: 100 MB of peak memory less)."""
        self.device = torch.device(config.device)
        self.config = config
        # any module with an int feature_dim is taken; its weights are the configured ones
        self.model = Backbone.of(model, weights_source=str(config.weights)).to(self.device)
        # vcp's own traced copy where it pays: BatchNorm to fold, or weights to cast once for
        # bf16/fp16 (a ViT in fp32 has neither: tracing it cost 0.15-0.2 s of start-up for nothing)
        traced = config.fuse_conv_bn and (has_batchnorm(self.model) or PRECISIONS[config.precision] is not None)
        self.net = fused(self.model) if traced else self.model
        if owned and self.net is not self.model:
            self.model.net = self.net  # the wrapper (its facts: width, recipe, weights' source) runs the folded copy
        self.clips = getattr(self.model, "kind", "frame") == "clip"  # [B, 3, T, H, W] windows, not frames
        self.memory_format = torch.channels_last_3d if self.clips else torch.channels_last
        if config.channels_last:
            self.net = self.net.to(memory_format=self.memory_format)
        self.dtype = PRECISIONS[config.precision]
        # layers whose weights are cast once to the autocast dtype, not at every forward
        self.weights_cast = cast_weights_once(self.net, self.dtype) if self.dtype and self.net is not self.model else 0
        self.target: InputSpec = self.model.input_spec
        # the model's own resize/crop, applied to stored frames (None: frames go in as stored)
        self.recipe = StoredRecipe(self.target, config.backbone, config.views) if config.uses_model_recipe and self.target.has_recipe else None
        self._affine_cache: dict = {}
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            self._copy_stream = torch.cuda.Stream(self.device)
            self._slots: list[list] = [[None, None] for _ in range(UPLOAD_SLOTS)]  # [pinned buffer, copy done event]
            self._next_slot = 0
        self.compiled = False
        if config.compile:
            self.net = torch.compile(self.net, dynamic=False)
            self.compiled = True
        # CUDA graphs: one capture per batch shape; False where a capture failed (eager then)
        self.graphs_wanted = self.cuda and config.cuda_graph and not self.compiled
        self._graphs: dict[tuple, tuple | bool] = {}
        self.graph_used = False
        self._output_checked = False

    def _upload(self, frames: torch.Tensor) -> torch.Tensor:
        """Host clip -> device through the next pinned slot, on the copy stream.

        A slot is refilled only after its previous copy has finished (its event), so the
        copy of clip k+3 into it can never race the transfer of clip k. The compute stream
        waits for the copy before it reads the clip.
        """
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        if slot[1] is not None:
            slot[1].synchronize()
        if slot[0] is None or slot[0].numel() < frames.numel() or slot[0].dtype != frames.dtype:
            slot[0] = torch.empty(frames.numel(), dtype=frames.dtype).pin_memory()
        staging = slot[0][: frames.numel()].view(frames.shape)
        staging.copy_(frames)
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = staging.to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record(self._copy_stream)
        compute.wait_event(slot[1])
        on_device.record_stream(compute)
        return on_device

    def _upload_pinned(self, frames: torch.Tensor) -> torch.Tensor:
        """Pinned host clip -> device on the copy stream, directly (torch's pinned-memory
        cache keeps the host block until the copy has finished)."""
        compute = torch.cuda.current_stream(self.device)
        with torch.cuda.stream(self._copy_stream):
            on_device = frames.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._copy_stream)
        compute.wait_event(done)
        on_device.record_stream(compute)
        return on_device

    def _renormalize(self, x: torch.Tensor, stored: InputSpec) -> torch.Tensor:
        """Clips are stored with ``stored`` mean/std; the backbone may expect others."""
        if (stored.mean, stored.std) == (self.target.mean, self.target.std):
            return x
        key = (stored, self.target)
        if key not in self._affine_cache:
            sm, ss = torch.tensor(stored.mean), torch.tensor(stored.std)
            tm, ts = torch.tensor(self.target.mean), torch.tensor(self.target.std)
            scale, shift = ss / ts, (sm - tm) / ts
            self._affine_cache[key] = (scale.to(self.device), shift.to(self.device))
        scale, shift = (t.view(1, 3, *[1] * (x.dim() - 2)) for t in self._affine_cache[key])
        return x * scale + shift

    @torch.inference_mode()
    def prepare(
        self, frames: torch.Tensor, stored: InputSpec = IMAGENET, *, layout: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[T, 3, H, W]`` (any device, any stored dtype) -> (frames ready for the network on
        the device, a device bool "all finite" — None when the storage cannot hold NaN).
        ``layout=False``: left in their memory format (the caller copies them into the
        network's, as :class:`~vcp.stages.packing.PackedEncoder` does into its batch)."""
        if self.cuda and not frames.is_cuda:
            frames = self._upload_pinned(frames) if frames.is_pinned() else self._upload(frames)
        frames = frames.to(self.device)
        finite = torch.isfinite(frames).all() if frames.is_floating_point() else None
        frames = frames.float()
        if self.recipe is not None and stored.size is None:  # (frames with a size were made by the recipe: from videos)
            frames = self.recipe(frames, stored)
        frames = self._renormalize(frames, stored)
        if layout and self.config.channels_last:
            frames = frames.contiguous(memory_format=self.memory_format)
        return frames, finite

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Prepared ``[B, 3, H, W]`` -> ``[B, D]`` float32 on the device (the first output's
        shape checked against the plugin contract: a wrong one never reaches the file)."""
        if not self._output_checked:  # the first batch, eagerly: its output's shape against the contract
            try:
                out = self._eager(batch)
            except AttributeError:  # not a tensor (a tuple, a dict): no .float()
                out = self.net(batch)
            self._check_output(out, batch.shape[0])
            self._output_checked = True
            return out
        if self.graphs_wanted and batch.shape[0] == self.config.forward_batch:
            out = self._replay(batch)
            if out is not None:
                return out
        return self._eager(batch)

    def _check_output(self, out, frames: int) -> None:
        want = (frames, self.model.feature_dim)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        if shape != want:
            from backbones import BackboneError, default_registry

            try:
                source = default_registry().spec(self.config.backbone).distribution
            except Exception:  # a model handed in directly, or a timm name
                source = "a model given directly" if self.config.backbone is None else "its factory"
            raise BackboneError(
                f"backbone {self.config.backbone} (from {source}) returned {shape} for a batch of {frames} frames; "
                f"the contract (docs/plugins.md) is [B, feature_dim] = {list(want)}: nothing was written")

    def _eager(self, batch: torch.Tensor, *, cache: bool = True) -> torch.Tensor:
        if self.dtype is None:
            return self.net(batch).float()
        with torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=cache):
            return self.net(batch).float()

    def _replay(self, batch: torch.Tensor) -> torch.Tensor | None:
        """The network as one CUDA graph: one launch per batch instead of hundreds, so the
        host thread (and the GIL) is free while the card works. The graph reads a fixed
        input buffer and writes a fixed output buffer; the output is cloned before the next
        replay can overwrite it. None: this shape could not be captured (run eagerly)."""
        key = (tuple(batch.shape), batch.dtype, tuple(batch.stride()))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(batch)
        if entry is False:
            return None
        static_in, graph, static_out = entry
        static_in.copy_(batch)
        graph.replay()
        self.graph_used = True
        return static_out.clone()

    def _capture(self, batch: torch.Tensor):
        try:
            static_in = batch.clone(memory_format=torch.preserve_format)
            compute = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(compute)
            with torch.cuda.stream(side):  # warm-up: cuDNN picks its algorithms outside the capture
                for _ in range(2):
                    self._eager(static_in, cache=False)
            compute.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: the decode threads' CUDA calls neither fail nor break the capture
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = self._eager(static_in, cache=False)
            return static_in, graph, static_out
        except Exception as exc:  # noqa: BLE001 - any model a graph cannot hold runs eagerly
            print(f"vcp: the backbone could not be captured as a CUDA graph ({_one_line(exc)}); running it eagerly",
                  file=sys.stderr, flush=True)
            return False

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, stored: InputSpec = IMAGENET, per_video=None) -> torch.Tensor:
        """``[T, 3, H, W]`` (any device) -> ``[T, D]`` float32 on the host (one video; or
        ``per_video`` of it), through the packed path vcp extract runs (:class:`NonFiniteClip`
        when the frames or the features hold NaN or Inf)."""
        from vcp.stages.packing import NOT_FINITE, PackedEncoder

        packer = PackedEncoder(self, self.config.forward_batch, per_video or (lambda feats: feats))
        ((_, rows),) = packer.put(None, frames, stored) + packer.finish()
        if rows is None or rows is NOT_FINITE:
            raise NonFiniteClip("holds NaN or Inf values" if rows is None else "its features hold NaN or Inf values")
        return torch.from_numpy(rows)


def video_features(encoder: FrameEncoder, video: torch.Tensor, config, stored: InputSpec = IMAGENET) -> torch.Tensor:
    """One video ``[T, 3, H, W]`` -> its rows: three-scale ``[max_L, D]`` or ``[T, D]``."""
    return encoder(video, stored, per_video=per_video_rows(config))


def per_video_rows(config):
    """What a video's (or its views') features become: its rows (:func:`video_rows`)."""
    return functools.partial(video_rows, scales=config.scales, multi_scale=config.multi_scale, views=config.views,
                             reduce=config.views_reduce)


def load_backbone(config) -> torch.nn.Module:
    """The configured backbone; random init (``weights=None``) is seeded by ``config.seed``
    without touching the caller's global RNG state, so reruns get the same network."""
    from backbones import get_backbone

    if not config.random_init:
        return get_backbone(config.backbone, config.weights, input_size=config.input_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return get_backbone(config.backbone, None, input_size=config.input_size)


def _one_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:200]
