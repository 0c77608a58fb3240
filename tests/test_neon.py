"""The NEON (aarch64) path of the fused SGD sweep, checked on an x86-64 machine.

tests/neon_driver.c is built for aarch64 from the kernel header in the source tree and run
under user-mode emulation (qemu-aarch64) on deterministic problems: the record sweep with
k = 16, 32, 64, 128 (the fixed-k bodies) and 24, 40 (the generic body with its masked tail),
AdaGrad and biases each on and off, a prior, the Huber and absolute losses, and the
row-grouped body of one block. Its factors, biases and accumulators must be bit-identical
to the ones the installed package's AVX2 and AVX-512 paths give on the same problem, and
agree with a plain NumPy implementation of the update to the tolerance of
tests/test_sgd_kernel.py.

Needs ``aarch64-linux-gnu-gcc`` and ``qemu-aarch64`` on PATH (Debian/Ubuntu:
``apt-get install gcc-aarch64-linux-gnu qemu-user``); skipped otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import mfkit
from mfkit._core.isa import isa_level
from mfkit.models import _sgd
from mfkit.models.sgd import RATING_DTYPE

CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")
pytestmark = pytest.mark.skipif(
    CC is None or QEMU is None,
    reason="the NEON test needs aarch64-linux-gnu-gcc and qemu-aarch64 on PATH "
    "(apt-get install gcc-aarch64-linux-gnu qemu-user)",
)

ROOT = Path(__file__).resolve().parent.parent
HEADERS = [ROOT / "src" / "mfkit" / "models", ROOT / "src" / "mfkit" / "_core"]
DRIVER = Path(__file__).resolve().parent / "neon_driver.c"
FAST = [p for p in mfkit.available_isas() if p in ("avx2", "avx512")]
MU, LR, REG, REG_BIAS, PRIOR, DELTA = 3.0, 0.05, 0.04, 0.03, 0.03, 0.7
LOSSES = {"squared": 0, "huber": 1, "absolute": 2}
NAMES = ("P", "Q", "bu", "bi", "Gp", "Gq", "Gbu", "Gbi")
# tests/test_sgd_kernel.py derives these for problems of this size (about 80 steps a row)
F32_ATOL, F64_ATOL = 1e-5, 1e-10


def _case(mode, dtype, k, *, ada, biases, loss="squared", prior=False, shuffle=True):
    return (mode, np.dtype(dtype).name, k, ada, biases, loss, prior, shuffle)


SWEEPS = [
    _case("sweep", dt, k, ada=ada, biases=b)
    for dt in (np.float32, np.float64)
    for k in (16, 32, 64, 128, 24, 40)
    for ada in (False, True)
    for b in (False, True)
] + [
    _case("sweep", dt, k, ada=ada, biases=True, loss=loss, prior=True)
    for dt in (np.float32, np.float64)
    for k, ada, loss in ((24, False, "huber"), (64, True, "absolute"), (40, True, "huber"))
]
ROWS = [
    _case("rows", dt, k, ada=ada, biases=b, shuffle=sh)
    for dt in (np.float32, np.float64)
    for k in (16, 32, 64, 128)
    for ada in (False, True)
    for b in (False, True)
    for sh in (True, False)
]
CASES = SWEEPS + ROWS


def _case_id(case) -> str:
    mode, dt, k, ada, biases, loss, prior, shuffle = case
    parts = [mode, dt, f"k{k}", "ada" if ada else "plain", "bias" if biases else "nobias"]
    parts += [loss] + (["prior"] if prior else []) + ([] if shuffle else ["ordered"])
    return "-".join(parts)


def _problem(case, seed: int = 7):
    """The inputs of one case: visiting data, factors, biases, accumulators, prior rows.
    Records for the sweep (1500 ratings of 23 users and 19 items, repeats allowed, stored
    in a random order); a CSR matrix for the row-grouped body (40 users, 30 items, each
    pair rated with probability 1/2, items ascending in a row)."""
    mode, dt, k = case[0], np.dtype(case[1]), case[2]
    rng = np.random.default_rng([seed, k, len(mode)])
    nu, ni = (23, 19) if mode == "sweep" else (40, 30)
    data: dict = {"nu": nu, "ni": ni, "epochs": 1 if mode == "sweep" else 2}
    if mode == "sweep":
        n = 1500
        recs = np.empty(n, dtype=RATING_DTYPE)
        recs["u"] = rng.integers(0, nu, n)
        recs["i"] = rng.integers(0, ni, n)
        recs["r"] = rng.integers(1, 6, n)
        data["recs"] = recs
    else:
        mask = rng.random((nu, ni)) < 0.5
        u, i = np.nonzero(mask)
        data["indptr"] = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
        data["indices"] = i.astype(np.int32)
        data["values"] = rng.integers(1, 6, len(u)).astype(np.float32)
    data["seeds"] = rng.integers(0, 2**63, data["epochs"], dtype=np.uint64)
    data["state"] = [
        rng.normal(0, 0.3, (nu, k)).astype(dt),
        rng.normal(0, 0.3, (ni, k)).astype(dt),
        rng.normal(0, 0.1, nu).astype(dt),
        rng.normal(0, 0.1, ni).astype(dt),
        rng.uniform(0.5, 2.0, nu).astype(dt),
        rng.uniform(0.5, 2.0, ni).astype(dt),
        rng.uniform(0.5, 2.0, nu).astype(dt),
        rng.uniform(0.5, 2.0, ni).astype(dt),
    ]
    data["P0"] = rng.normal(0, 0.3, (nu, k)).astype(dt)
    data["Q0"] = rng.normal(0, 0.3, (ni, k)).astype(dt)
    return data


def _write_input(path: Path, case, data) -> None:
    mode, dt, k, ada, biases, loss, prior, shuffle = case
    n = len(data["recs"]) if mode == "sweep" else len(data["indices"])
    head = [0 if mode == "sweep" else 1, np.dtype(dt).itemsize, k, data["nu"], data["ni"], n]
    head += [int(biases), int(ada), int(prior), LOSSES[loss], int(shuffle), data["epochs"]]
    parts = [np.array(head + [0] * (16 - len(head)), dtype="<i8").tobytes()]
    x = [MU, LR, REG, REG_BIAS, PRIOR if prior else 0.0, DELTA, 0.0, 0.0]
    parts.append(np.array(x, dtype="<f8").tobytes())
    parts.append(data["seeds"].astype("<u8").tobytes())
    if mode == "sweep":
        parts.append(data["recs"].tobytes())
    else:
        parts += [data[name].tobytes() for name in ("indptr", "indices", "values")]
    s = data["state"]
    parts += [a.tobytes() for a in (s[0], s[1], s[2], s[3], data["P0"], data["Q0"], *s[4:])]
    path.write_bytes(b"".join(parts))


def _read_output(path: Path, case, data):
    dt, k, nu, ni = np.dtype(case[1]), case[2], data["nu"], data["ni"]
    raw = path.read_bytes()
    sse = float(np.frombuffer(raw, "<f8", 1)[0])
    status = int(np.frombuffer(raw, "<i8", 1, 8)[0])
    sizes = (nu * k, ni * k, nu, ni, nu, ni, nu, ni)
    flat = np.frombuffer(raw, dt, sum(sizes), 16)
    assert len(raw) == 16 + flat.nbytes
    out = np.split(flat, np.cumsum(sizes)[:-1])
    out[0], out[1] = out[0].reshape(nu, k), out[1].reshape(ni, k)
    return out, sse, status


def _build(pytestconfig, scratch: Path) -> Path:
    """The driver built for aarch64 as the package is built (-O2, no contraction), kept in
    pytest's cache under the digest of its sources, flags and compiler (the build takes
    ~20 s; the emulated run ~2 s); in `scratch` when pytest runs without its cache
    (``-p no:cacheprovider``)."""
    flags = ["-O2", "-std=c11", "-ffp-contract=off", "-Wall", "-Wno-unused-function", "-static"]
    version = subprocess.run([CC, "--version"], check=True, capture_output=True).stdout
    digest = hashlib.sha256(version + " ".join(flags).encode())
    for src in [DRIVER, *(path for h in HEADERS for path in sorted(h.glob("*.h")))]:
        digest.update(src.read_bytes())
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("mfkit-neon") if cache is not None else scratch
    exe = folder / f"neon_driver-{digest.hexdigest()[:16]}"
    if not exe.exists():
        tmp = exe.with_suffix(".tmp")
        cmd = [CC, *flags, *(f"-I{h}" for h in HEADERS), str(DRIVER), "-o", str(tmp)]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        tmp.replace(exe)
    return exe


@pytest.fixture(scope="module")
def neon(tmp_path_factory, pytestconfig):
    """Every case run once on the NEON path: one build, one emulator process."""
    tmp = tmp_path_factory.mktemp("neon")
    exe = _build(pytestconfig, tmp)
    args, problems = [], {}
    for j, case in enumerate(CASES):
        data = problems[case] = _problem(case)
        _write_input(tmp / f"in{j}", case, data)
        args += [str(tmp / f"in{j}"), str(tmp / f"out{j}")]
    subprocess.run([QEMU, str(exe), *args], check=True, capture_output=True, text=True)
    return {
        case: (problems[case], *_read_output(tmp / f"out{j}", case, problems[case]))
        for j, case in enumerate(CASES)
    }


def _run_x86(case, data, path: str):
    """The same problem through the installed package's kernel path `path`."""
    mode, _, _, ada, biases, loss, prior, shuffle = case
    P, Q, bu, bi, Gp, Gq, Gbu, Gbi = (a.copy() for a in data["state"])
    kw = {"loss": LOSSES[loss], "delta": DELTA, "isa": isa_level(path)}
    if ada:
        kw.update(Gp=Gp, Gq=Gq, Gbu=Gbu, Gbi=Gbi)
    P0, Q0 = (data["P0"], data["Q0"]) if prior else (None, None)
    common = (P, Q, bu, bi, MU, LR, REG, REG_BIAS, biases)
    sse, bad = 0.0, -1
    for e in range(data["epochs"]):
        if mode == "sweep":
            recs = data["recs"].copy()
            s, bad = _sgd.sgd_epoch(recs, *common, P0, Q0, PRIOR if prior else 0.0, **kw)
        else:
            indptr, nu = data["indptr"], data["nu"]
            seg = np.ascontiguousarray(np.stack([indptr[:-1], indptr[1:]], axis=1))
            users = np.arange(nu, dtype=np.int32)
            s, bad = _sgd.sgd_rows_epoch(
                indptr, data["indices"], data["values"], seg, users,
                np.array([0, nu], dtype=np.int64), np.zeros(1, dtype=np.int64),
                data["seeds"][e : e + 1], shuffle, 1, *common, **kw,
            )  # fmt: skip
        sse += s
        assert bad == -1
    return [P, Q, bu, bi, Gp, Gq, Gbu, Gbi], sse


def _reference(case, data):
    """A plain NumPy float64 implementation of the update, one rating at a time, over the
    case's records in storage order (row-grouped without shuffle: the CSR order)."""
    mode, _, k, ada, biases, loss, prior, shuffle = case
    assert mode == "sweep" or not shuffle
    P, Q, bu, bi, Gp, Gq, Gbu, Gbi = (a.astype(np.float64) for a in data["state"])
    if mode == "sweep":
        us, its, rs = data["recs"]["u"], data["recs"]["i"], data["recs"]["r"]
    else:
        us = np.repeat(np.arange(data["nu"]), np.diff(data["indptr"]))
        its, rs = data["indices"], data["values"]
    P0, Q0 = data["P0"].astype(np.float64), data["Q0"].astype(np.float64)
    sse = 0.0
    for _ in range(data["epochs"]):
        for u, i, r in zip(us, its, rs, strict=True):
            p, q = P[u].copy(), Q[i].copy()
            e = float(r) - (MU + p @ q + ((bu[u] + bi[i]) if biases else 0.0))
            sse += e * e
            g = {"squared": e, "huber": np.clip(e, -DELTA, DELTA), "absolute": np.sign(e)}[loss]
            dp, dq = g * q - REG * p, g * p - REG * q
            if prior:
                dp, dq = dp - PRIOR * (p - P0[u]), dq - PRIOR * (q - Q0[i])
            sp, sq, sbu, sbi = (LR / np.sqrt(x) for x in (Gp[u], Gq[i], Gbu[u], Gbi[i]))
            if not ada:
                sp = sq = sbu = sbi = LR
            if biases:
                gu, gi = g - REG_BIAS * bu[u], g - REG_BIAS * bi[i]
                bu[u], bi[i] = bu[u] + sbu * gu, bi[i] + sbi * gi
                if ada:
                    Gbu[u], Gbi[i] = Gbu[u] + gu * gu, Gbi[i] + gi * gi
            P[u], Q[i] = p + sp * dp, q + sq * dq
            if ada:
                Gp[u], Gq[i] = Gp[u] + dp @ dp / k, Gq[i] + dq @ dq / k
    return [P, Q, bu, bi, Gp, Gq, Gbu, Gbi], sse


@pytest.mark.skipif(not FAST, reason="this CPU has no AVX2 or AVX-512 path to compare with")
@pytest.mark.parametrize("path", ["avx2", "avx512"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_neon_gives_the_bits_of_the_x86_fused_paths(neon, case, path):
    if path not in FAST:
        pytest.skip(f"this CPU has no {path} path")
    data, got, sse, status = neon[case]
    assert status == -1
    want, want_sse = _run_x86(case, data, path)
    for name, a, b in zip(NAMES, got, want, strict=True):
        assert a.dtype == b.dtype
        diff = np.abs(a.astype(np.float64) - b).max()
        assert np.array_equal(a, b), f"{name} differs from {path} by up to {diff:.3g}"
    assert sse == want_sse


@pytest.mark.parametrize(
    "case", [c for c in CASES if c[0] == "sweep" or not c[7]], ids=_case_id
)  # fmt: skip
def test_neon_matches_the_numpy_update(neon, case):
    data, got, sse, status = neon[case]
    assert status == -1
    want, want_sse = _reference(case, data)
    f32 = case[1] == "float32"
    atol = F32_ATOL if f32 else F64_ATOL
    for name, a, b in zip(NAMES, got, want, strict=True):
        # the accumulators are sums of ~80 positive terms that grow to a few hundred: a
        # relative bound, 80 roundings of 6e-8 (float32) or 1.1e-16 (float64)
        rtol = (5e-6 if f32 else 1e-13) if name.startswith("G") else 0.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)
    assert sse == pytest.approx(want_sse, rel=1e-4 if f32 else 1e-10)
    # the update did something: the factors moved far beyond the tolerance
    assert np.abs(want[0] - data["state"][0]).max() > 100 * F32_ATOL
