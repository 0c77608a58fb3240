"""The kernel-path switch: names, MFKIT_ISA, set_isa/use_isa and their errors."""

from __future__ import annotations

import pytest

import mfkit
from mfkit._core import isa


def test_available_starts_with_baseline_and_is_ordered():
    avail = mfkit.available_isas()
    assert avail[0] == "baseline"
    assert avail == isa.ISAS[: len(avail)]


def test_default_is_best_available(monkeypatch):
    monkeypatch.delenv("MFKIT_ISA", raising=False)
    assert mfkit.get_isa() == mfkit.available_isas()[-1]
    assert isa.isa_level() == len(mfkit.available_isas()) - 1


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("MFKIT_ISA", " Baseline ")
    assert mfkit.get_isa() == "baseline"
    assert isa.isa_level() == 0
    monkeypatch.setenv("MFKIT_ISA", "auto")
    assert mfkit.get_isa() == mfkit.available_isas()[-1]
    monkeypatch.setenv("MFKIT_ISA", "sse9")
    with pytest.raises(ValueError, match="MFKIT_ISA='sse9'.*baseline, avx2, avx512"):
        mfkit.get_isa()


def test_set_and_use_isa(monkeypatch):
    monkeypatch.setenv("MFKIT_ISA", "baseline")
    try:
        mfkit.set_isa(mfkit.available_isas()[-1])
        assert mfkit.get_isa() == mfkit.available_isas()[-1]  # set_isa wins over the variable
        with mfkit.use_isa("baseline") as name:
            assert name == "baseline" and mfkit.get_isa() == "baseline"
        assert mfkit.get_isa() == mfkit.available_isas()[-1]
    finally:
        mfkit.set_isa(None)
    assert mfkit.get_isa() == "baseline"


def test_bad_names():
    with pytest.raises(TypeError, match="isa must be a string"):
        mfkit.set_isa(2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a kernel path"):
        mfkit.set_isa("neon9")
    missing = [name for name in isa.ISAS if name not in mfkit.available_isas()]
    for name in missing:
        with pytest.raises(ValueError, match="offers only"):
            mfkit.set_isa(name)
    assert mfkit.get_isa() in mfkit.available_isas()  # a refused call changes nothing
