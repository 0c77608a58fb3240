"""Shared fixtures: small seeded data sets with known structure."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# Hypothesis profiles for the fuzz suite (tests/test_fuzz.py): "quick" (the default, run in
# CI: a few dozen derandomised examples per test, so the whole suite stays within minutes on
# two cores) and "long" for release checks:
#     MFKIT_FUZZ_PROFILE=long python -m pytest tests/test_fuzz.py
# (or pytest's --hypothesis-profile=long).
settings.register_profile(
    "quick",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("MFKIT_FUZZ_PROFILE", "quick"))
