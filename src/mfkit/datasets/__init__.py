"""Built-in data: seeded synthetic rating sets shaped like MovieLens and Netflix."""

from mfkit.datasets._synthetic import PRESETS, synthetic

__all__ = ["PRESETS", "synthetic"]
