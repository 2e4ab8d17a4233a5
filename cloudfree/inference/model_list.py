"""What ``cloudfree models`` lists: the network architectures with their presets, and the bundled
models. The internal ``fill`` architecture has no network: it shows as the model ``median-fill``."""

from __future__ import annotations

from dataclasses import dataclass

from cloudfree.inference import bundled
from cloudfree.inference.engines import FILL_ARCH
from cloudfree.networks import ARCHITECTURES, build


@dataclass(frozen=True)
class PresetInfo:
    """One preset of an architecture, sized."""

    arch: str
    preset: str
    parameters: int
    size_multiple: int
    receptive_field: int


def count_parameters(arch: str, preset: str) -> PresetInfo:
    """Build the preset on CPU and count its parameters."""
    network = build(arch, preset)
    return PresetInfo(arch, preset, sum(p.numel() for p in network.parameters()),
                      network.size_multiple, network.receptive_field())


def human_count(n: int) -> str:
    """18947341 -> '18.95 M', 82093 -> '82.1 k', 0 -> 'none' (a network without weights)."""
    if n == 0:
        return "none"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def catalog_lines() -> list[str]:
    """The text of ``cloudfree models``."""
    lines = ["Architectures (preset: parameters, size multiple, receptive field radius in px):"]
    for arch in sorted(set(ARCHITECTURES) - {FILL_ARCH}):  # the fill: median-fill, below
        lines.append(f"  {arch}")
        for preset in ARCHITECTURES[arch].presets:
            info = count_parameters(arch, preset)
            lines.append(f"    {preset:<14} {human_count(info.parameters):>9}  "
                         f"x{info.size_multiple:<3} rf {info.receptive_field}")
    models = bundled.bundled_models()
    lines.append(f"Bundled models ({bundled.MODELS_DIR}):")
    for name, path in models.items():
        default = " (default)" if name == bundled.DEFAULT_MODEL else ""
        lines.append(f"  {name}{default}: {bundled.model_summary(path)}")
    if not models:
        lines.append("  none; use --checkpoint or --onnx")
    return lines
