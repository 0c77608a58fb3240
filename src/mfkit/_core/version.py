"""The mfkit version (one source: the package, model files and caches all read it here)."""

__version__ = "0.1.0"
