"""The search's MongoDB server: ``mongod`` if one is on PATH, else the embedded SecantusDB.

SecantusDB (PyPI ``SecantusDB``, module ``secantus``) is a MongoDB-compatible server written in
Python over WiredTiger; it runs in this process, on 127.0.0.1. The data directory persists, so
starting a server again on the same directory (same ``exp_key``) resumes a search.

Run standalone (e.g. for workers on other machines to join)::

    python -m scvi.inference._autotune.server --port 1234 --dbpath ./mongo
"""
import atexit
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Union

logger = logging.getLogger("scvi.inference.autotune")

BACKENDS = ("auto", "mongod", "secantus")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class MongoServer:
    """A MongoDB server for the search, started on ``host:port`` with its data in ``dbpath``.

    Parameters
    ----------
    dbpath
        Data directory (created if needed; reopened intact by a later server).
    port
        TCP port; ``0`` lets the system choose one (see :attr:`port` once started).
    host
        Host name written in :attr:`url`; the embedded server always listens on 127.0.0.1.
    backend
        ``"auto"`` (``mongod`` if found on PATH, else SecantusDB), ``"mongod"`` or ``"secantus"``.
    start_timeout
        Seconds to wait for the server to answer.

    Examples
    --------
    >>> with MongoServer("./mongo", port=0) as server:  # doctest: +SKIP
    ...     print(server.url)
    """

    def __init__(
        self,
        dbpath: Union[str, os.PathLike],
        port: Union[int, str] = 1234,
        host: str = "localhost",
        backend: str = "auto",
        start_timeout: float = 60.0,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")
        try:
            self.port = int(port)
        except (TypeError, ValueError):
            raise ValueError(f"`mongo_port` must be an integer port number; got {port!r}") from None
        if not 0 <= self.port <= 65535:
            raise ValueError(f"`mongo_port` must be in [0, 65535]; got {port!r}")
        self.dbpath = Path(dbpath)
        self.host = host
        self.backend = ("mongod" if shutil.which("mongod") else "secantus") if backend == "auto" else backend
        self.start_timeout = start_timeout
        self._process: Optional[subprocess.Popen] = None
        self._embedded = None
        self._logfile = None

    @property
    def url(self) -> str:
        """``mongodb://host:port/`` of the running server."""
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped."""
        return self._embedded is not None or (self._process is not None and self._process.poll() is None)

    def start(self) -> "MongoServer":
        """Start the server and wait until it answers.

        Raises
        ------
        RuntimeError
            If it does not answer within ``start_timeout`` seconds (e.g. the port is taken).
        """
        if self.running:
            raise RuntimeError("the server is already running")
        self.dbpath.mkdir(parents=True, exist_ok=True)
        if self.backend == "mongod":
            self._start_mongod()
        else:
            self._start_secantus()
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_mongod(self) -> None:
        logfile = self.dbpath / "mongo_logfile.txt"
        logger.debug("Starting MongoDB process, logs redirected to %s.", logfile)
        self._logfile = open(logfile, "a")
        port = self.port or _free_port()
        self.port = port
        self._process = subprocess.Popen(
            ["mongod", "--quiet", f"--dbpath={self.dbpath}", f"--port={port}", "--bind_ip=127.0.0.1"],
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
        )

    def _start_secantus(self) -> None:
        from secantus import SecantusDBServer

        if self.host not in _LOOPBACK:
            logger.warning("The embedded server listens on 127.0.0.1 only: other hosts cannot reach %r.", self.host)
        logger.debug("Starting embedded MongoDB-compatible server (SecantusDB), data in %s.", self.dbpath)
        server = SecantusDBServer(
            host="127.0.0.1", port=self.port, storage_path=str(self.dbpath), replica_set_name=None
        )
        try:
            server.start()
        except OSError as exc:
            server.storage.close()
            raise RuntimeError(f"cannot start the embedded MongoDB server on 127.0.0.1:{self.port}: {exc}") from exc
        self._embedded = server
        self.port = server.port

    def _wait_ready(self) -> None:
        import pymongo

        deadline = time.monotonic() + self.start_timeout
        last_error: Optional[Exception] = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = self.dbpath / "mongo_logfile.txt"
                raise RuntimeError(f"mongod exited with code {self._process.returncode}; see {log}")
            client = pymongo.MongoClient(f"mongodb://127.0.0.1:{self.port}/", serverSelectionTimeoutMS=500)
            try:
                client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError as exc:
                last_error = exc
                time.sleep(0.1)
            finally:
                client.close()
        raise RuntimeError(
            f"the MongoDB server on port {self.port} did not answer within {self.start_timeout}s: {last_error}"
        )

    def stop(self) -> None:
        """Stop the server (idempotent); its data stays in ``dbpath``."""
        atexit.unregister(self.stop)
        if self._embedded is not None:
            server, self._embedded = self._embedded, None
            listening = getattr(server, "_socket", None)
            if listening is not None:  # wakes its blocking accept() at once (else stop() waits 2 s for it)
                with contextlib.suppress(OSError):
                    listening.shutdown(socket.SHUT_RDWR)
            server.stop()
        if self._process is not None:
            process, self._process = self._process, None
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._logfile is not None:
            self._logfile.close()
            self._logfile = None

    def __enter__(self) -> "MongoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv=None) -> int:
    """Serve until interrupted (``python -m scvi.inference._autotune.server --port 1234 --dbpath ./mongo``)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="Run the autotune MongoDB server until interrupted.")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--dbpath", default="./mongo")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    args = parser.parse_args(argv)
    server = MongoServer(args.dbpath, port=args.port, backend=args.backend).start()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
