"""Getting an archive onto disk: checked if already there, else downloaded with pooch.

Why pooch (the optional ``mfkit[datasets]`` extra) rather than code of our own: it is what
SciPy and scikit-image fetch their data sets with, and it already streams to a temporary file
in the target folder, checks the pinned hash before renaming into place (so the final path never
holds a partial or wrong file), retries, and takes a timeout and a progress bar. mfkit adds the
checks pooch does not make: an archive already on disk is verified and, if damaged, refused and
left in place (pooch would silently download over it), and every failure says what to do.

The transfer itself is mfkit's small resuming downloader plugged into pooch: bytes go to a
hidden ``.<archive>.part`` file in the data folder, so an interrupted download (Ctrl-C, a
dropped connection, a timeout) leaves nothing at the final path and the next attempt (pooch's
retry, or the next call) asks the server for the remaining bytes only (an HTTP ``Range``
request; a server that does not honour it sends the whole file again, which replaces the
partial one). A completed file that fails the checksum is discarded, partial bytes included,
so the next call starts from scratch.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import IO, Any

from mfkit._core.validation import check_number
from mfkit.datasets._registry import Archive
from mfkit.exceptions import ChecksumError, DatasetDownloadError

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "check_options", "fetch", "verify"]

#: seconds to wait for the server to accept the connection
CONNECT_TIMEOUT = 10.0
#: seconds without a single byte from the server before the download is abandoned
READ_TIMEOUT = 30.0
_PROGRESS_MIN_BYTES = 10 << 20  # progress=None shows a bar for files at least this large


def _digests(path: str) -> tuple[str, str, int]:
    sha, md5, n = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
            md5.update(block)
            n += len(block)
    return sha.hexdigest(), md5.hexdigest(), n


def verify(path: str, archive: Archive) -> None:
    """Raise :class:`ChecksumError` (naming ``path``) unless the file has the pinned size,
    SHA-256 and (when pinned) MD5. The file is never modified or removed."""
    size = os.path.getsize(path)
    how = (
        f"It is damaged, truncated or another file. It is left in place: inspect it, then "
        f"delete it so mfkit downloads it again, or replace it with the official file from "
        f"{archive.url}"
    )
    if archive.size is not None and size != archive.size:
        raise ChecksumError(
            f"{path}: {size:,} bytes where the official {archive.filename} has "
            f"{archive.size:,}. {how}"
        )
    sha, md5, _ = _digests(path)
    if sha != archive.sha256.lower():
        raise ChecksumError(
            f"{path}: SHA-256 {sha} is not the pinned {archive.sha256} of the official "
            f"{archive.filename}. {how}"
        )
    if archive.md5 is not None and md5 != archive.md5.lower():
        raise ChecksumError(f"{path}: MD5 {md5} is not GroupLens's published {archive.md5}. {how}")


class _Progress:
    """Download progress: one self-overwriting line on stderr, at most 4 times a second."""

    def __init__(self, label: str, enabled: bool | None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.total = 0
        self.done = 0
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def _on(self) -> bool:
        if self.enabled is None:
            return self.total >= _PROGRESS_MIN_BYTES
        return self.enabled

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self._on() and (now - self.last >= 0.25 or self.done >= self.total > 0):
            self.last = now
            self._show(now)

    def _show(self, now: float) -> None:
        secs = max(now - self.t0, 1e-9)
        rate = self.done / secs
        done = min(self.done, self.total) if self.total else self.done
        text = f"\r{self.label}: {done / 1e6:,.1f}"
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            text += f" / {self.total / 1e6:,.1f} MB ({100 * done / self.total:.0f}%)"
            text += f", {rate / 1e6:.1f} MB/s, ETA {eta:.0f} s"
        else:
            text += f" MB, {rate / 1e6:.1f} MB/s"
        self.stream.write(text.ljust(79))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class _ResumingDownloader:
    """The download step pooch calls as ``downloader(url, output_file, pooch)``: continues
    ``part`` where an earlier attempt stopped, then moves the complete file onto pooch's
    temporary ``output_file`` (same folder), which pooch checks and renames into place."""

    def __init__(self, part: str, progress: _Progress, timeout: Any) -> None:
        self.part = part
        self.progress = progress
        self.timeout = timeout

    def __call__(self, url: str, output_file: Any, pooch: Any) -> None:
        import requests

        have = os.path.getsize(self.part) if os.path.isfile(self.part) else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            resumed = (
                have > 0
                and r.status_code == 206
                and r.headers.get("Content-Range", "").startswith(f"bytes {have}-")
            )
            if have and r.status_code == 416:  # the part is already whole (or foreign)
                os.unlink(self.part)
                return self(url, output_file, pooch)
            r.raise_for_status()
            if not resumed:
                have = 0
            length = int(r.headers.get("Content-Length", 0) or 0)
            self.progress.total = have + length if length else 0
            self.progress.done = have
            with open(self.part, "ab" if resumed else "wb") as fh:
                for chunk in r.iter_content(chunk_size=1 << 16):
                    fh.write(chunk)
                    self.progress.update(len(chunk))
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(self.part, os.fspath(output_file))


def check_options(
    download: Any, timeout: Any, retries: Any, progress: Any
) -> tuple[float | tuple[float, float], int]:
    """Check the download options (named in the errors); returns the timeout (defaults
    filled in) and the retry count."""
    for value, name in ((download, "download"), (progress, "progress")):
        if not (isinstance(value, bool) or (value is None and name == "progress")):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    return _check_timeout(timeout), check_number(retries, "retries", low=0, integer=True)


def _check_timeout(timeout: Any) -> float | tuple[float, float]:
    if timeout is None:
        return (CONNECT_TIMEOUT, READ_TIMEOUT)
    if isinstance(timeout, tuple | list):
        if len(timeout) != 2:
            raise ValueError(f"timeout must be seconds or a (connect, read) pair, got {timeout!r}")
        c = check_number(timeout[0], "timeout[0]", low=0, low_inclusive=False)
        r = check_number(timeout[1], "timeout[1]", low=0, low_inclusive=False)
        return (c, r)
    v: float = check_number(timeout, "timeout", low=0, low_inclusive=False)
    return v


def _by_hand(archive: Archive, folder: str) -> str:
    return (
        f"To place it by hand: download {archive.url} in a browser or with "
        f"'curl -LO {archive.url}', then put the file, named {archive.filename!r}, in "
        f"{folder!r} (or set $MFKIT_DATA / data_home= to the folder that holds it)."
    )


def fetch(
    archive: Archive,
    folder: str,
    *,
    download: bool = True,
    timeout: float | tuple[float, float] | None = None,
    retries: int = 1,
    progress: bool | None = None,
) -> str:
    """The path of ``archive`` in ``folder``, verified against its pins; downloaded first when
    missing and ``download`` is true.

    ``timeout``: seconds to connect and seconds without data before giving up (one number for
    both, or a (connect, read) pair; default (:data:`CONNECT_TIMEOUT`,
    :data:`READ_TIMEOUT`)). ``retries``: further attempts after a failed transfer (pooch
    waits 1 s, 2 s, ... between them). ``progress``: show progress on stderr (``None``: for
    files of 10 MB or more).
    """
    timeout, retries = check_options(download, timeout, retries, progress)
    path = os.path.join(folder, archive.filename)
    if os.path.isfile(path):
        verify(path, archive)
        return path
    if not download:
        raise DatasetDownloadError(
            f"{archive.filename} is not in {folder!r} and download=False. "
            + _by_hand(archive, folder)
        )
    try:
        import pooch
    except ImportError:
        raise DatasetDownloadError(
            f"{archive.filename} is not in {folder!r}, and downloading it needs the optional "
            f"package pooch: pip install 'mfkit[datasets]'. " + _by_hand(archive, folder)
        ) from None
    import requests  # pooch's own dependency

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise DatasetDownloadError(f"cannot create the data folder {folder!r}: {e}") from e
    bar = _Progress(archive.filename, progress)
    part = os.path.join(folder, "." + archive.filename + ".part")
    downloader = _ResumingDownloader(part, bar, timeout)
    fetcher = pooch.create(
        path=folder,
        base_url="",
        registry={archive.filename: "sha256:" + archive.sha256.lower()},
        urls={archive.filename: archive.url},
        retry_if_failed=int(retries),
    )
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # mfkit reports progress itself
    try:
        fetcher.fetch(archive.filename, downloader=downloader)
    except requests.exceptions.RequestException as e:
        kept = ""
        if os.path.isfile(part):
            kept = "; the bytes received are kept and the next call resumes"
        raise DatasetDownloadError(
            f"could not download {archive.url} into {folder!r}: {type(e).__name__}: {e} "
            f"(timeout {timeout} s to connect / between bytes). Nothing was left at {path!r}"
            f"{kept}. " + _by_hand(archive, folder)
        ) from e
    except ValueError as e:  # pooch's hash mismatch: the temporary file is already removed
        if os.path.exists(part):  # pragma: no cover - the part was moved onto the temporary
            os.unlink(part)
        raise ChecksumError(
            f"the file downloaded from {archive.url} does not have the pinned SHA-256 "
            f"{archive.sha256} ({e}); it was discarded and nothing was written to {path!r}. "
            f"If GroupLens has replaced the archive, the pinned checksum needs updating."
        ) from e
    finally:
        logger.setLevel(level)
        bar.close()
    verify(path, archive)
    return path
