"""Orchestration of a search: sequential (in this process) or parallel (server, driver, workers).

Parallel layout: the MongoDB server (``mongod`` or the embedded SecantusDB, or an existing one
at ``mongo_url``), the driver loop in a thread of this process (:class:`FminLauncherThread`),
worker processes started by :class:`WorkerLauncherThread` (none with ``multiple_hosts``), the
progress relayed here. Everything started is stopped on the way out, on success,
error or Ctrl-C.
"""
import logging
import os
import queue
import socket
import time
from pathlib import Path
from typing import Callable, List, Optional

from .driver import DEFAULT_LEASE_S, FminLauncherThread, FminTimeoutError
from .logs import ProgressListener, progress_bar
from .mongo import MongoJobs4, requeue_jobs, to_mongodb_uri, with_database
from .server import MongoServer
from .launcher import WorkerLauncherThread, resolve_worker_counts
from .workers import DEFAULT_HEARTBEAT_S

logger = logging.getLogger("scvi.inference.autotune")


def search_sequential(objective: Callable, space: dict, max_evals: int, rstate=None):
    """Run hyperopt's ``fmin`` in this process on an in-memory ``Trials``; return the trials."""
    from hyperopt import Trials, fmin, tpe

    from ..._utils import check_random_state

    logger.info("Starting sequential hyperoptimization")
    trials = Trials()
    show = logger.getEffectiveLevel() >= logging.WARNING >= logging.getLogger("scvi").getEffectiveLevel()
    fmin(
        objective, space, algo=tpe.suggest, max_evals=max_evals, trials=trials, rstate=check_random_state(rstate),
        show_progressbar=show,
    )
    return trials


def _requeue_orphans(mongo_url: str, exp_key: str) -> None:
    """Requeue running jobs of ``exp_key`` left by workers of this machine that no longer exist."""
    handle = MongoJobs4.new_from_connection_str(mongo_url)
    try:
        prefix = f"{socket.gethostname()}:"
        for doc in handle.jobs.find({"exp_key": exp_key, "state": 1}, projection=["owner"]):
            owner = (doc.get("owner") or [""])[0]
            if owner.startswith(prefix) and not _pid_alive(int(owner[len(prefix):] or 0)):
                requeue_jobs(handle, {"_id": doc["_id"], "owner": doc["owner"]}, "left running by a previous search")
    finally:
        handle.close()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_server(save_path: str, mongo_port: str, mongo_host: str) -> MongoServer:
    server = MongoServer(Path(save_path) / "mongo", port=mongo_port, host=mongo_host)
    if server.backend == "secantus":
        server.dbpath = Path(save_path) / "mongo" / "secantus"
    logger.debug("Starting MongoDB process (%s), data in %s", server.backend, server.dbpath)
    return server.start()


def search_parallel(
    objective: Callable,
    exp_key: str,
    space: dict,
    max_evals: int = 100,
    save_path: str = ".",
    n_cpu_workers: Optional[int] = None,
    gpu_ids: Optional[List[int]] = None,
    n_workers_per_gpu: int = 1,
    reserve_timeout: float = 180.0,
    fmin_timeout: Optional[float] = 300.0,
    fmin_timer: Optional[float] = None,
    mongo_port: str = "1234",
    mongo_host: str = "localhost",
    db_name: str = "scvi_db",
    multiple_hosts: bool = False,
    mongo_url: Optional[str] = None,
    lease_s: float = DEFAULT_LEASE_S,
    heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    poll_interval: Optional[float] = None,
):
    """Run a parallel search; return its ``MongoTrials4`` (see :func:`auto_tune_scvi_model`).

    Raises
    ------
    FminTimeoutError
        If the search has not finished ``fmin_timeout`` seconds after all local workers exited.
    """
    logger.info("Starting parallel hyperoptimization")
    if not multiple_hosts:
        resolve_worker_counts(n_cpu_workers, gpu_ids, n_workers_per_gpu)  # fail before starting anything
    server = fmin_thread = launcher = listener = None
    try:
        if mongo_url is not None:
            uri, db = to_mongodb_uri(mongo_url, default_db=db_name)
        elif multiple_hosts:
            uri, db = to_mongodb_uri(f"{mongo_host}:{mongo_port}/{db_name}")
        else:
            server = _start_server(save_path, mongo_port, mongo_host)
            uri, db = to_mongodb_uri(f"{server.url}{db_name}")
        url = with_database(uri, db)
        _requeue_orphans(url, exp_key)

        progress_queue: "queue.Queue[int]" = queue.Queue()
        listener = ProgressListener(progress_queue, pbar=progress_bar(max_evals))
        listener.start()

        logger.debug("Starting minimization procedure")
        results: "queue.Queue" = queue.Queue()
        fmin_thread = FminLauncherThread(
            None, results, objective, exp_key, space, max_evals=max_evals, fmin_timer=fmin_timer,
            mongo_url=url, on_progress=progress_queue.put, lease_s=lease_s, poll_interval=poll_interval,
        )
        fmin_thread.start()
        if multiple_hosts:
            logger.info(
                "Waiting for workers started on other hosts with:\n"
                "    python -m scvi.inference.autotune worker --mongo-url %s --exp-key %s", url, exp_key,
            )
        else:
            logger.debug("Starting worker launcher")
            launcher = WorkerLauncherThread(
                None, exp_key, n_cpu_workers=n_cpu_workers, gpu_ids=gpu_ids, n_workers_per_gpu=n_workers_per_gpu,
                reserve_timeout=reserve_timeout, workdir=None, mongo_url=url, max_evals=max_evals,
                log_level=logger.getEffectiveLevel(), heartbeat_s=heartbeat_s, poll_interval=poll_interval,
            )
            launcher.start()
        return _wait_for_result(results, fmin_thread, launcher, fmin_timeout)
    finally:
        for thread in (fmin_thread, launcher):
            if thread is not None:
                thread.stop()
        for thread in (fmin_thread, launcher):
            if thread is not None:
                thread.join(timeout=60)
        if listener is not None:
            listener.stop()
            listener.join(timeout=5)
        if server is not None:
            server.stop()


def _wait_for_result(results: "queue.Queue", fmin_thread, launcher, fmin_timeout: Optional[float]):
    """Wait for the driver's trials; raise ``FminTimeoutError`` if it outlives the workers by ``fmin_timeout``."""
    logger.debug("Started waiting for fmin.")
    workers_gone_at = None
    while True:
        try:
            outcome = results.get(timeout=0.1)
            break
        except queue.Empty:
            pass
        if launcher is not None and not launcher.is_alive() and fmin_timeout is not None:
            if workers_gone_at is None:
                workers_gone_at = time.monotonic()
                logger.debug("All workers have exited; fmin has %s seconds to finish.", fmin_timeout)
            elif time.monotonic() - workers_gone_at > fmin_timeout:
                fmin_thread.stop()
                raise FminTimeoutError(
                    f"fmin had not finished {fmin_timeout} seconds after all workers exited (no job for "
                    "`reserve_timeout` seconds, or they died too often); its trials are kept in the database"
                )
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
