"""The kernel-path switch: names, MFKIT_ISA, set_isa/use_isa and their errors."""

from __future__ import annotations

import pytest

import mfkit
from mfkit._core import isa


def test_available_starts_with_baseline_and_is_ordered():
    avail = mfkit.available_isas()
    assert avail[0] == "baseline"
    assert avail in (isa.ISAS[:1], isa.ISAS[:2], isa.ISAS[:3], ("baseline", "neon"))


def test_default_is_best_available(monkeypatch):
    monkeypatch.delenv("MFKIT_ISA", raising=False)
    assert mfkit.get_isa() == mfkit.available_isas()[-1]
    assert isa.isa_level() == isa.ISAS.index(mfkit.available_isas()[-1])


def test_paths_of_each_architecture():
    """The x86-64 levels include the ones below; aarch64 has the baseline and neon."""
    assert isa._paths_of(0) == ("baseline",)
    assert isa._paths_of(1) == ("baseline", "avx2")
    assert isa._paths_of(2) == ("baseline", "avx2", "avx512")
    assert isa._paths_of(3) == ("baseline", "neon")
    assert isa.ISAS.index("neon") == 3  # MFKIT_ISA_NEON in _isa.h


def test_neon_on_an_aarch64_build(monkeypatch):
    """What an aarch64 build (best path MFKIT_ISA_NEON) offers: baseline and neon; neon by
    default and by MFKIT_ISA; the x86 paths refused with the available ones named."""
    monkeypatch.setattr(isa, "_CPU_LEVEL", isa.ISAS.index("neon"))
    monkeypatch.delenv("MFKIT_ISA", raising=False)
    assert mfkit.available_isas() == ("baseline", "neon")
    assert mfkit.get_isa() == "neon" and isa.isa_level() == 3
    monkeypatch.setenv("MFKIT_ISA", "NEON")
    assert mfkit.get_isa() == "neon"
    monkeypatch.setenv("MFKIT_ISA", "baseline")
    assert isa.isa_level() == 0
    for name in ("avx2", "avx512"):
        monkeypatch.setenv("MFKIT_ISA", name)
        with pytest.raises(ValueError, match="offers only baseline, neon;"):
            mfkit.get_isa()


def test_neon_off_aarch64_names_the_available_paths(monkeypatch):
    if "neon" in mfkit.available_isas():
        pytest.skip("this build is for aarch64")
    monkeypatch.setenv("MFKIT_ISA", "neon")
    avail = ", ".join(mfkit.available_isas())
    with pytest.raises(ValueError, match=f"MFKIT_ISA='neon': .* offers only {avail};"):
        mfkit.get_isa()


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
