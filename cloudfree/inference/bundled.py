"""Models shipped with the package: ``cloudfree/models/<name>.pt`` with a card ``<name>.md``.

They live inside the package (not at the repository root) so that ``pip install`` installs them
with the code, as package data (``models/*.pt``, ``models/*.md``).
"""

from __future__ import annotations

from pathlib import Path

from cloudfree.core.errors import UsageError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
#: The bundled network-free fill: the single-date model that needs no S1.
FILL_MODEL = "median-fill"
#: The default: the local fill with thin cloud and haze restored, no network. On real clouds
#: blended over the pool's clear images (same-date truth, benchmarks/one_date_quality.py), the
#: fill network on top of it scored 0.5 dB lower on the scenes it never saw in training.
DEFAULT_MODEL = FILL_MODEL


def bundled_models() -> dict[str, Path]:
    """Name -> checkpoint path of every bundled model, sorted by name."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.pt"))}


def bundled_model(name: str = DEFAULT_MODEL) -> Path:
    """The checkpoint of a bundled model, or a one-line error listing the bundled ones."""
    models = bundled_models()
    if name not in models:
        known = ", ".join(models) or "none in this installation"
        raise UsageError(f"no bundled model {name!r} (bundled: {known}); "
                         "give checkpoint=PATH or onnx=PATH instead", "checkpoint", "onnx")
    return models[name]


def model_summary(checkpoint: Path) -> str:
    """The first line of the model card beside the checkpoint, without Markdown heading marks."""
    card = checkpoint.with_suffix(".md")
    if not card.is_file():
        return "no model card"
    lines = [line.strip("# ").strip() for line in card.read_text().splitlines()]
    return next((line for line in lines if line), "empty model card")
