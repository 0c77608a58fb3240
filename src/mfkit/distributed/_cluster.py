"""Waiting on a cluster: gathering futures within a time limit, and what a lost worker
raises on the client. Imports ``distributed`` only inside its functions (the optional extra)."""

from __future__ import annotations

from typing import Any


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


def lost_errors() -> tuple[type[BaseException], ...]:
    """What a worker lost under a computation raises on the client."""
    import concurrent.futures

    import distributed

    return (
        distributed.KilledWorker,
        distributed.comm.CommClosedError,
        distributed.client.FutureCancelledError,
        concurrent.futures.CancelledError,
        OSError,
    )


__all__ = ["gather_within", "lost_errors"]
