"""``make bench`` rows: bf16 against fp32 per model family on this CPU (``--only precision``).

One network of each family vcp tells apart (``vcp.common.precision.family_of``): a CNN with
depthwise convolutions (efficientnet_v2_s), a ResNet (resnet50), a ViT (ViT-S/16); each run
as vcp runs it (``FrameEncoder``: conv+BN folded, channels-last, bf16 weights cast once)
over the same 64 frames at 224², 8 per forward, fp32 and bf16 alternating, best of 3. The
ratio is what ``vcp extract`` says when it suggests ``--precision bf16``.
"""

from __future__ import annotations

import time

import torch

FAMILIES = (("depthwise CNN", "efficientnet_v2_s"), ("ResNet", "resnet50"), ("ViT", "timm/vit_small_patch16_224"))


def _time(encoder, frames: torch.Tensor, batch: int = 8) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = torch.cat([encoder.forward(encoder.prepare(frames[i:i + batch])[0]) for i in range(0, len(frames), batch)])
    return time.perf_counter() - start, out


def precision_rows(rows: list, runs: int = 3) -> dict[str, tuple[float, float]]:
    """Rows for ``make bench``; returns family -> (bf16 speed-up, max relative difference)."""
    from backbones import get_backbone
    from vcp.common.devices import cpu_flags
    from vcp.common.precision import family_of
    from vcp.stages.encoder import FrameEncoder
    from vcp.stages.settings import ExtractConfig

    torch.manual_seed(0)
    frames = torch.randn(64, 3, 224, 224)
    flags = cpu_flags() or set()
    native = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    found = {}
    for family, name in FAMILIES:
        model = get_backbone(name, weights=None)
        assert family_of(model) == family, (name, family_of(model))
        encoders = {p: FrameEncoder(model, ExtractConfig(backbone=name, precision=p, recipe="stored")) for p in ("fp32", "bf16")}
        for enc in encoders.values():
            _time(enc, frames[:8])  # warm-up
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        outs = {}
        for _ in range(runs):
            for p, enc in encoders.items():
                t, outs[p] = _time(enc, frames)
                times[p].append(t)
        fp32, bf16 = min(times["fp32"]), min(times["bf16"])
        rel = float((outs["bf16"] - outs["fp32"]).abs().max() / outs["fp32"].abs().max())
        found[family] = (fp32 / bf16, rel)
        rows.append((
            f"bf16 vs fp32, {family} ({name}), 64 frames at 224², 8 per forward, as vcp runs it "
            f"(CPU bf16 instructions: {', '.join(native) or 'none: emulated'})",
            f"fp32: {fp32:.2f} s", f"bf16: {bf16:.2f} s", f"{fp32 / bf16:.2f}×", "(measure: what the hint says)",
            f"max rel diff {rel:.1e}",
        ))
        print(rows[-1], flush=True)
    return found
