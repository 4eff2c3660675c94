"""Local worker processes: started, replaced when they die (their job back in the queue), stopped.

:class:`WorkerLauncherThread` starts ``n_workers_per_gpu`` workers per GPU (each seeing only its
GPU through ``CUDA_VISIBLE_DEVICES``) plus CPU workers, each a separate process running the
documented worker command (``python -m scvi.inference.autotune worker ...``), and stops them by
process id.
"""
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

from .logs import StoppableThread
from .mongo import MongoJobs4, owner_of, requeue_jobs
from .workers import DEFAULT_HEARTBEAT_S

logger = logging.getLogger("scvi.inference.autotune")


def resolve_worker_counts(
    n_cpu_workers: Optional[int], gpu_ids: Optional[List[int]], n_workers_per_gpu: int
) -> Tuple[int, List[int]]:
    """Apply scVI 0.6's defaults: all GPUs found; CPU workers = number of cores when there is no GPU.

    Raises
    ------
    ValueError
        If a count is negative or no worker would be started.
    """
    if gpu_ids is None:
        import torch

        n_gpus = torch.cuda.device_count()
        logger.debug("gpu_ids is None, defaulting to all %d GPUs found by torch.", n_gpus)
        gpu_ids = list(range(n_gpus))
    gpu_ids = [int(g) for g in gpu_ids]
    if n_cpu_workers is None:
        n_cpu_workers = 0 if gpu_ids else (os.cpu_count() or 1)
    if not isinstance(n_workers_per_gpu, int) or n_workers_per_gpu < 0:
        raise ValueError(f"`n_workers_per_gpu` must be a non-negative int; got {n_workers_per_gpu!r}")
    if not isinstance(n_cpu_workers, int) or n_cpu_workers < 0:
        raise ValueError(f"`n_cpu_workers` must be a non-negative int or None; got {n_cpu_workers!r}")
    if n_cpu_workers + len(gpu_ids) * n_workers_per_gpu == 0:
        raise ValueError("no worker to start: set `n_cpu_workers` > 0, or `gpu_ids` and `n_workers_per_gpu` > 0")
    return n_cpu_workers, gpu_ids


class _LocalWorker:
    """A worker started as ``python -m scvi.inference.autotune worker ...`` in a subprocess."""

    def __init__(self, name: str, gpu: bool, hw_id: str, command: List[str]):
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = hw_id if gpu else ""
        # the parent's import path, so that objectives pickled by reference import the same modules
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.name, self.gpu, self.hw_id, self.command = name, gpu, hw_id, command
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        self.pid = self.process.pid
        self.handled = False

    @property
    def exitcode(self) -> Optional[int]:
        return self.process.poll()

    def is_alive(self) -> bool:
        return self.process.poll() is None


class WorkerLauncherThread(StoppableThread):
    """Starts the local workers, replaces those that die (their job goes back to the queue), stops them.

    Each worker is a separate process running the documented worker command (``python -m
    scvi.inference.autotune worker ...``), so nothing of the calling script is re-imported; GPU
    workers see only their GPU (``CUDA_VISIBLE_DEVICES``), CPU workers none. The thread ends when
    every worker has exited (e.g. after ``reserve_timeout`` without a job), or on :meth:`stop`,
    after which the workers still running are terminated by process id (SIGTERM: the job in
    progress goes back to the queue; SIGKILL after ``terminate_timeout`` seconds).

    Parameters are those of :class:`HyperoptWorker`, plus ``n_cpu_workers``, ``gpu_ids`` and
    ``n_workers_per_gpu`` (see :func:`resolve_worker_counts`), ``multiple_hosts`` (start
    nothing), ``max_evals`` and ``progress_queue`` (unused; progress is reported by the driver)
    and ``max_restarts`` (replacements of dead workers allowed in total, default twice the number
    of workers).
    """

    def __init__(
        self,
        logging_queue,
        exp_key: str,
        n_cpu_workers: int = None,
        gpu_ids: List[int] = None,
        n_workers_per_gpu: int = 1,
        reserve_timeout: float = 30.0,
        workdir: str = ".",
        mongo_url: str = "localhost:1234/scvi_db",
        multiple_hosts: bool = False,
        max_evals: int = 100,
        progress_queue=None,
        log_level: int = logging.INFO,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        max_restarts: Optional[int] = None,
        poll_interval: Optional[float] = None,
    ):
        super().__init__(name="Worker Launcher", daemon=True)
        self.logging_queue = logging_queue
        self.exp_key = exp_key
        self.n_cpu_workers, self.gpu_ids = resolve_worker_counts(n_cpu_workers, gpu_ids, n_workers_per_gpu)
        self.n_workers_per_gpu = n_workers_per_gpu
        self.reserve_timeout = reserve_timeout
        self.workdir = workdir
        self.mongo_url = mongo_url
        self.multiple_hosts = multiple_hosts
        self.max_evals = max_evals
        self.progress_queue = progress_queue
        self.log_level = log_level
        self.heartbeat_s = heartbeat_s
        self.poll_interval = poll_interval
        n_workers = self.n_cpu_workers + len(self.gpu_ids) * n_workers_per_gpu
        self.max_restarts = 2 * n_workers if max_restarts is None else max_restarts
        self.workers: List[_LocalWorker] = []
        self.started_pids: List[int] = []
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def _command(self) -> List[str]:
        command = [sys.executable, "-m", "scvi.inference.autotune", "worker", "--mongo-url", self.mongo_url,
                   "--exp-key", self.exp_key, "--heartbeat", str(self.heartbeat_s),
                   "--log-level", logging.getLevelName(max(logging.DEBUG, min(self.log_level, logging.ERROR)))]
        if self.reserve_timeout is not None:
            command += ["--reserve-timeout", str(self.reserve_timeout)]
        if self.workdir:
            command += ["--workdir", str(self.workdir)]
        if self.poll_interval is not None:
            command += ["--poll-interval", str(self.poll_interval)]
        return command

    def _start(self, name: str, gpu: bool, hw_id: str) -> _LocalWorker:
        worker = _LocalWorker(name, gpu, hw_id, self._command())
        self.started_pids.append(worker.pid)
        logger.debug("Started %s (pid %d).", name, worker.pid)
        return worker

    def _launch_all(self) -> None:
        logger.info(
            "Starting %d worker.s for each of the %d gpu.s set for use/found.",
            self.n_workers_per_gpu,
            len(self.gpu_ids),
        )
        for gpu_id in self.gpu_ids:
            for sub_id in range(self.n_workers_per_gpu):
                self._add(self._start(f"Worker GPU {gpu_id}:{sub_id}", True, str(gpu_id)))
        logger.info("Starting %d cpu worker.s", self.n_cpu_workers)
        for cpu_id in range(self.n_cpu_workers):
            self._add(self._start(f"Worker CPU {cpu_id}", False, str(cpu_id)))

    def _add(self, worker: _LocalWorker) -> None:
        with self._lock:
            if self.stop_event.is_set():  # stopped meanwhile: do not leave it behind
                worker.process.terminate()
            self.workers.append(worker)

    def _handle_death(self, worker: _LocalWorker) -> None:
        """Requeue the job of a worker that died; start a replacement while restarts remain."""
        worker.handled = True
        logger.warning("%s (pid %d) died with exit code %s.", worker.name, worker.pid, worker.exitcode)
        handle = MongoJobs4.new_from_connection_str(self.mongo_url)
        try:
            requeue_jobs(handle, {"owner": owner_of(socket.gethostname(), worker.pid)}, f"{worker.name} died")
        finally:
            handle.close()
        if self.max_restarts > 0 and not self.stop_event.is_set():
            self.max_restarts -= 1
            self._add(self._start(worker.name, worker.gpu, worker.hw_id))

    def run(self) -> None:
        if self.multiple_hosts:
            logger.info("multiple_hosts=True: no local worker started.")
            self.ready.set()
            return
        try:
            self._launch_all()
            self.ready.set()
            while not self.stop_event.wait(0.1):
                for worker in list(self.workers):
                    if not worker.is_alive() and worker.exitcode != 0 and not worker.handled:
                        self._handle_death(worker)
                if not any(worker.is_alive() for worker in self.workers):
                    logger.debug("All workers have exited.")
                    break
        except Exception:
            logger.exception("Worker launcher failed.")
        finally:
            self.ready.set()
            self.terminate_workers()

    def terminate_workers(self, terminate_timeout: float = 10.0) -> None:
        """Stop the workers still running, by process id: SIGTERM (job handed back), then SIGKILL."""
        with self._lock:
            self.stop_event.set()
            workers = list(self.workers)
        for worker in workers:
            if worker.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + terminate_timeout
        for worker in workers:
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %d) did not stop; killing it.", worker.name, worker.pid)
                worker.process.kill()
                worker.process.wait(5)
