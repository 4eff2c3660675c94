"""Download machinery of the built-in datasets, and the ``DownloadableDataset`` base class.

A file is streamed (with a progress bar) into a temporary ``.part`` file next to its target and
renamed into place only once complete, so an interrupted or failed download never leaves a
partial file behind. ``http``, ``https`` and ``ftp`` URLs are fetched with :mod:`urllib`.

Sites without internet (e.g. HPC compute nodes) point a *mirror* at a local folder or at an
internal web server: with ``SCVI_DATA_MIRROR=/shared/scvi-mirror`` (or
``scvi.dataset.set_data_mirror("/shared/scvi-mirror")``) the dataset URL
``https://host/path/file`` is fetched from ``/shared/scvi-mirror/host/path/file``; a mirror that
is a URL (``http://intranet/scvi``) is used the same way. A query string is kept verbatim
(``<mirror>/host/path?query``).
"""
import http.client
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from .._utils import atomic_write, track
from ._base import GeneExpressionDataset

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_MIRROR",
    "DownloadError",
    "DownloadableDataset",
    "get_data_mirror",
    "mirrored_url",
    "set_data_mirror",
]

#: Environment variable naming the data mirror (a local folder or a base URL).
MIRROR_ENV_VAR = "SCVI_DATA_MIRROR"

#: Module-level mirror; when set it takes precedence over ``$SCVI_DATA_MIRROR``.
DATA_MIRROR: Optional[str] = None

#: Seconds without data after which a download is abandoned.
DOWNLOAD_TIMEOUT: float = 60.0

_CHUNK_SIZE = 1 << 16
_USER_AGENT = "scvi (python urllib)"


class DownloadError(OSError):
    """A dataset file could not be downloaded (HTTP error, timeout, truncated transfer…)."""


def set_data_mirror(mirror: Optional[Union[str, os.PathLike]]) -> None:
    """Fetch dataset files from a mirror instead of their original hosts.

    Parameters
    ----------
    mirror
        A local folder, a ``file://`` URL or an ``http(s)://`` / ``ftp://`` base URL; ``None`` to
        go back to ``$SCVI_DATA_MIRROR`` (or to the original hosts when it is unset). A dataset URL
        ``https://host/path/file`` is then fetched from ``<mirror>/host/path/file``.

    Raises
    ------
    TypeError
        If ``mirror`` is neither ``None``, a string nor a path.
    """
    global DATA_MIRROR
    if mirror is not None and not isinstance(mirror, (str, os.PathLike)):
        raise TypeError(f"`mirror` must be None, a folder or a base URL; got {type(mirror).__name__}")
    DATA_MIRROR = None if mirror is None else os.fspath(mirror)


def get_data_mirror() -> Optional[str]:
    """The mirror in force: :func:`set_data_mirror`'s value, else ``$SCVI_DATA_MIRROR``, else ``None``."""
    if DATA_MIRROR:
        return DATA_MIRROR
    return os.environ.get(MIRROR_ENV_VAR) or None


def mirrored_url(url: str, mirror: Optional[str] = None) -> str:
    """Where to fetch ``url`` from, given a mirror (default: :func:`get_data_mirror`).

    Parameters
    ----------
    url
        The dataset's original URL (``http``, ``https`` or ``ftp``).
    mirror
        A local folder or base URL; ``None`` uses the mirror in force.

    Returns
    -------
    ``url`` itself without a mirror, else ``<mirror>/host/path[?query]`` as a URL (a local folder
    becomes a ``file://`` URL).
    """
    mirror = mirror if mirror is not None else get_data_mirror()
    if not mirror:
        return url
    parts = urllib.parse.urlsplit(url)
    relative = parts.netloc + parts.path
    if parts.query:
        relative += "?" + parts.query
    if urllib.parse.urlsplit(mirror).scheme in ("http", "https", "ftp", "file"):
        return mirror.rstrip("/") + "/" + relative
    # A local folder: the query (if any) is part of the file name, hence quoted in the URL.
    return (Path(mirror).expanduser().resolve() / relative).as_uri()


def _describe(url: str, source: str) -> str:
    return url if source == url else f"{url} (from mirror {source})"


def _download(url: str, save_path: Union[str, os.PathLike], filename: str, timeout: Optional[float] = None) -> None:
    """Download ``url`` to ``save_path/filename`` unless that file already exists.

    The data streams into a temporary ``.part`` file renamed into place when complete.

    Raises
    ------
    DownloadError
        On an HTTP / FTP error, a timeout, a connection closed early or a size different from the
        announced ``Content-Length``; the message names the URL and no file is left behind.
    """
    target = Path(save_path) / filename
    if target.exists():
        logger.info("File %s already downloaded", target)
        return
    source = mirrored_url(url)
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    what = _describe(url, source)
    logger.info("Downloading %s to %s", what, target)
    request = urllib.request.Request(source, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            _stream_to(response, target, what)
    except DownloadError:
        raise
    except urllib.error.HTTPError as error:
        raise DownloadError(f"downloading {what} failed: HTTP error {error.code} ({error.reason})") from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, (socket.timeout, TimeoutError)):
            raise DownloadError(f"downloading {what} timed out after {timeout:g} s") from error
        raise DownloadError(f"downloading {what} failed: {error.reason}") from error
    except (socket.timeout, TimeoutError) as error:
        raise DownloadError(f"downloading {what} timed out after {timeout:g} s (no data received)") from error
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"downloading {what} failed: {error!r}") from error


def _stream_to(response, target: Path, what: str) -> None:
    length = response.headers.get("Content-Length")
    expected = int(length) if length is not None and length.strip().isdigit() else None
    received = 0
    with atomic_write(target, "wb") as handle:
        bar = track(
            None,
            description=f"Downloading {target.name}",
            total=expected,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
        )
        with bar:
            while True:
                chunk = response.read(_CHUNK_SIZE)
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(
                f"downloading {what} failed: received {received} bytes but Content-Length announced {expected} "
                "(connection closed early?)"
            )


def _as_list(value: Union[None, str, Iterable[str]], name: str) -> Optional[Sequence[str]]:
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if isinstance(value, (list, tuple)):  # kept as is: CiteSeqDataset uses a named tuple
        items: Sequence = value
    else:
        try:
            items = list(value)
        except TypeError:
            raise TypeError(f"`{name}` must be a string or an iterable of strings; got {type(value).__name__}")
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"`{name}` must contain strings; got {type(item).__name__} {item!r}")
    return items


class DownloadableDataset(GeneExpressionDataset, ABC):
    """A ``GeneExpressionDataset`` that downloads its files, then populates itself from them.

    Files already in ``save_path`` are not downloaded again. Set a mirror with
    ``$SCVI_DATA_MIRROR`` or :func:`scvi.dataset.set_data_mirror` on machines without internet.

    Parameters
    ----------
    urls
        Single or multiple URL(s) from which to download the data.
    filenames
        File names for the downloaded data (one per URL; ``dataset_{i}`` by default).
    save_path
        Folder where the files are stored.
    delayed_populating
        If ``False``, populate the dataset upon instantiation; else only download, and let the user
        call :meth:`populate` later.

    Raises
    ------
    DownloadError
        If a file cannot be downloaded.
    """

    def __init__(
        self,
        urls: Union[str, Iterable[str]] = None,
        filenames: Union[str, Iterable[str]] = None,
        save_path: str = "data/",
        delayed_populating: bool = False,
    ):
        super().__init__()
        url_list = _as_list(urls, "urls")
        self.urls: Sequence[str] = [] if url_list is None else url_list
        filename_list = _as_list(filenames, "filenames")
        if filename_list is None:
            filename_list = [f"dataset_{i}" for i in range(len(self.urls))]
        if len(filename_list) < len(self.urls):
            raise ValueError(
                f"`filenames` must name every downloaded file: got {len(filename_list)} filenames for "
                f"{len(self.urls)} urls"
            )
        self.filenames: Sequence[str] = filename_list
        if not isinstance(save_path, (str, os.PathLike)):
            raise TypeError(f"`save_path` must be a path; got {type(save_path).__name__}")
        self.save_path = os.path.abspath(save_path)
        self.download()
        if not delayed_populating:
            self.populate()

    def download(self) -> None:
        """Download every file of ``urls`` that is not in ``save_path`` yet."""
        for url, filename in zip(self.urls, self.filenames):
            _download(url, self.save_path, filename)

    @abstractmethod
    def populate(self) -> None:
        """Populate the dataset's attributes from the downloaded files.

        E.g. by calling one of ``GeneExpressionDataset``'s ``populate_from_...`` methods.
        """

    def _file_path(self, index: int = 0) -> str:
        """Absolute path of the ``index``-th file."""
        return os.path.join(self.save_path, self.filenames[index])

