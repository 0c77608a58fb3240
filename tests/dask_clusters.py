"""What the Dask test modules share: the synthetic rating frame and real LocalClusters on
loopback (in-process workers or worker processes with nannies), one per test module.

A module takes a cluster as a fixture with ``two_processes = cluster_fixture(2,
processes=True)``; Dask is imported only when a cluster is made, so the modules can still
skip on a machine without the ``mfkit[dask]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

# the bound on every fit a Dask test makes (``timeout=``): a lost worker fails, never hangs
FIT_TIMEOUT = 60.0


def rating_frame(seed: int, n: int = 100_000, string_items: bool = True) -> pd.DataFrame:
    """Synthetic ratings with non-contiguous integer user ids and string (or sparse
    integer) item ids, each pair once, in no particular order."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 4000, n) * 7 + 1000
    items = rng.integers(0, 900, n)
    df = pd.DataFrame({"user": users, "item": items})
    df = df.drop_duplicates(["user", "item"]).reset_index(drop=True)
    # ratings from a low-rank model plus noise, on half stars
    pu = rng.standard_normal((4000, 3))
    qi = rng.standard_normal((900, 3))
    score = np.sum(pu[(df.user.to_numpy() - 1000) // 7] * qi[df.item.to_numpy()], axis=1)
    df["rating"] = np.clip(np.round((3 + score + rng.normal(0, 0.5, len(df))) * 2) / 2, 0.5, 5)
    if string_items:
        df["item"] = np.array([f"movie-{x:05d}" for x in df.item.to_numpy() * 13])
    else:
        df["item"] = df.item * 13 + 5
    return df


def make_client(n_workers: int, processes: bool) -> tuple[object, object]:
    """A LocalCluster of one-thread workers over real loopback connections, and a client
    that is not made the default (each test passes it on)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        processes=processes,
        threads_per_worker=1,
        dashboard_address=":0",
        protocol="tcp://",  # real connections over loopback, threads or processes
        host="127.0.0.1",
        silence_logs=40,
    )
    return cluster, distributed.Client(cluster, set_as_default=False)


def cluster_fixture(n_workers: int, processes: bool) -> Callable[[], Iterator[object]]:
    """A module-scoped fixture yielding the client of a fresh cluster, closed after the
    module's last test."""

    @pytest.fixture(scope="module")
    def client() -> Iterator[object]:
        cluster, c = make_client(n_workers, processes)
        yield c
        c.close()  # type: ignore[attr-defined]
        cluster.close()  # type: ignore[attr-defined]

    return client
