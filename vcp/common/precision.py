"""Whether bf16 pays here: the hardware's support, the family of a network, and what
``make bench`` measured per family (``bench/precision.py``).

fp32 stays the default (features equal earlier runs'); where this CPU runs bf16 natively and
bf16 was measured faster for the network's family, ``vcp extract`` says so in one line.
"""

from __future__ import annotations

from vcp.common.devices import NATIVE_CPU_FLAGS, cpu_flags

# family -> ((bf16 speed-up over fp32, lowest and highest of two runs), max relative difference
# of the features), as vcp runs
# the network (conv+BN folded, channels-last, weights cast once): make bench's "bf16 vs fp32"
# rows (64 frames at 224², 8 per forward) on a 2-core Intel Xeon with AMX-BF16 and
# AVX512-BF16, torch 2.14.1, 2026-12-06. Measured where the CPU has AMX: a CPU with
# AVX512-BF16 alone gets no hint (not measured here).
MEASURED = {
    "depthwise CNN": ((1.61, 1.96), 9.3e-3),  # efficientnet_v2_s
    "ResNet": ((2.67, 3.72), 7.2e-3),  # resnet50
    "ViT": ((2.08, 2.73), 8.7e-3),  # ViT-S/16
}
MEASURED_WITH = "amx_bf16"
MEASURED_ON = "a 2-core Intel Xeon with AMX (make bench, 2026-12-06)"
WORTH = 1.1  # a smaller gain is not worth a line


def family_of(model) -> str:
    """``ViT`` (attention blocks), ``depthwise CNN`` (convolutions with one group per channel:
    EfficientNet, MobileNet, ConvNeXt), ``ResNet`` (dense convolutions only), or ``other``."""
    import torch

    modules = list(model.modules())
    if any(isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__.endswith("Attention") for m in modules):
        return "ViT"
    convs = [m for m in modules if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d)]
    if any(m.groups > 1 and m.groups == m.in_channels for m in convs):
        return "depthwise CNN"
    return "ResNet" if convs else "other"


def native_bf16(device: str, flags: set[str] | None = None) -> list[str]:
    """What runs bf16 natively on ``device``: this CPU's instructions (``amx_bf16``,
    ``avx512_bf16``), or the card (compute capability 8.0 or later); [] where nothing does."""
    if device.startswith("cuda"):
        import torch

        return ["the card"] if torch.cuda.is_bf16_supported(including_emulation=False) else []
    flags = cpu_flags() if flags is None else flags
    return [f for f in NATIVE_CPU_FLAGS["bf16"] if f in (flags or ())]


def bf16_hint(precision: str, device: str, model, flags: set[str] | None = None) -> str | None:
    """One line suggesting ``--precision bf16`` for an fp32 run on a CPU that runs bf16
    natively, when bf16 was measured faster for ``model``'s family; else None."""
    if precision != "fp32" or device != "cpu":
        return None
    native = native_bf16(device, flags)
    family = family_of(model)
    (low, high), diff = MEASURED.get(family, ((None, None), None))
    if MEASURED_WITH not in native or low is None or low < WORTH:
        return None
    return (f"hint: this CPU runs bf16 natively ({', '.join(native)}): --precision bf16 ran {family} backbones "
            f"{low:.2f}-{high:.2f}x as fast as fp32 on {MEASURED_ON}, features within {diff:.0e} relative; "
            "fp32 stays the default (its features equal earlier fp32 runs')")
