"""Waiting on a cluster: gathering futures within a time limit, and what a lost worker
raises on the client. Imports ``distributed`` only inside its functions (the optional extra)."""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("mfkit.distributed")


class WorkerLost(Exception):
    """A worker that computations were pinned to has left the cluster."""


def gather_within(futures: list[Any], timeout: float, what: str, client: Any) -> list[Any]:
    """The futures' results in one transfer, in order (the first failed one raises its
    task's error), or ``TimeoutError`` once ``timeout`` seconds have passed."""
    import distributed

    try:
        with client.as_current():
            distributed.wait(futures, timeout=timeout)
    except TimeoutError:
        n = len(client.scheduler_info().get("workers", {}))
        raise TimeoutError(
            f"{what} did not finish within {timeout:g} s ({n} workers connected); start "
            f"workers or raise timeout="
        ) from None
    return client.gather(futures)


def wait_pinned(
    futures: list[Any],
    timeout: float,
    what: str,
    client: Any,
    pinned: set[str],
    gather: bool = True,
) -> list[Any]:
    """:func:`gather_within` for futures pinned to the workers ``pinned`` (strict
    restrictions, so Dask never moves them): raises :class:`WorkerLost` as soon as one of
    those workers has left, instead of waiting for tasks that can no longer run.
    ``gather=False``: wait only (the results stay on the workers; returns []).
    Fetching the results is bounded the same way: a worker that dies after the wait and
    before the fetch takes results with it that nothing can compute again."""
    import distributed

    deadline = time.monotonic() + timeout

    def patiently(step: Any) -> Any:
        # run step(seconds) in slices of at most half a second until it returns, checking
        # between slices that the pinned workers are still there and the time is not up
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                n = len(client.scheduler_info().get("workers", {}))
                raise TimeoutError(
                    f"{what} did not finish within {timeout:g} s ({n} workers connected); "
                    f"start workers or raise timeout="
                )
            try:
                return step(min(0.5, left))
            except TimeoutError:
                workers = set(client.scheduler_info().get("workers", {}))
                if workers and not pinned <= workers:
                    raise WorkerLost(f"{what}: workers {sorted(pinned - workers)} left") from None

    with client.as_current():
        patiently(lambda t: distributed.wait(futures, timeout=t))
        if not gather:
            return []
        return [patiently(lambda t, f=f: f.result(timeout=t)) for f in futures]


def pause_after_loss(label: str, attempt: int, retries: int) -> None:
    """Log that a worker was lost under the ``label`` half-step (try ``attempt`` of
    ``retries``) and wait, longer after each loss, for the scheduler to notice before the
    half-step runs again."""
    logger.warning(
        "a worker was lost during the %s half-step; solving it again (%d of %d)",
        label,
        attempt + 1,
        retries,
    )
    time.sleep(min(0.25 * 2**attempt, 5.0))


def lost_errors() -> tuple[type[BaseException], ...]:
    """What a worker lost under a computation raises on the client."""
    import concurrent.futures

    import distributed

    return (
        WorkerLost,
        distributed.KilledWorker,
        distributed.comm.CommClosedError,
        distributed.client.FutureCancelledError,
        concurrent.futures.CancelledError,
        OSError,
    )


__all__ = ["WorkerLost", "gather_within", "lost_errors", "pause_after_loss", "wait_pinned"]
