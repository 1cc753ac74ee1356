"""The bundled HC18 sample (CC BY 4.0, see ATTRIBUTION.md)."""

from pathlib import Path


def sample_dir() -> Path:
    """Folder of the bundled HC18 sample, in the official layout."""
    return Path(__file__).resolve().parent / "hc18"
