"""Workers: processes that claim jobs from the database, evaluate them and write the results.

A :class:`Worker` claims the oldest new job of its experiment (atomically, hyperopt's document
format), evaluates hyperopt's pickled ``Domain`` on it, and writes the result (state 2) or the
failure with its traceback (state 3). While it evaluates, a heartbeat refreshes the job's
``refresh_time``, so that the driver can hand back the job of a worker that vanished. On SIGTERM
or Ctrl-C the job in progress goes back to the queue. It exits after ``reserve_timeout`` seconds
without finding a job.

Local workers are started and stopped by :mod:`.launcher`; :func:`worker_main` is the command
line of a worker, local or on another machine.
"""
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from typing import Callable, Dict, List, Optional

from hyperopt import base
from hyperopt.mongoexp import MongoCtrl, OperationFailure
from hyperopt.utils import coarse_utcnow, working_dir

from .logs import configure_asynchronous_logging
from .mongo import MongoJobs4, MongoTrials4, owner_of, requeue_jobs, retrying

logger = logging.getLogger("scvi.inference.autotune")

MIN_POLL_S = 0.005
MAX_POLL_S = 0.25
DEFAULT_HEARTBEAT_S = 10.0


class Shutdown(BaseException):
    """Raised in a worker's main thread by SIGTERM: hand back the job and exit."""


def _raise_shutdown(signum, frame):
    raise Shutdown(signum)


def _spawn_popen(process_obj):
    """Start processes with the 'spawn' method (a fresh interpreter: CUDA-safe, no inherited threads)."""
    return multiprocessing.get_context("spawn").Process._Popen(process_obj)


class Worker:
    """Evaluates the jobs of one experiment until none comes for ``reserve_timeout`` seconds.

    Parameters
    ----------
    mongo_url
        Database address (see :func:`~scvi.inference._autotune.mongo.to_mongodb_uri`).
    exp_key
        Experiment whose jobs this worker takes.
    workdir
        Directory to run each job in (``None``: the current one).
    reserve_timeout
        Seconds without finding a job after which :meth:`run` returns (``None``: never).
    heartbeat_s
        Seconds between two check-ins while a job runs.
    on_job_done
        Called after each finished job (done or failed).
    max_jobs
        Stop after this many jobs (``None``: no limit).
    poll_interval
        Fixed pause between two attempts to claim a job (``None``: adaptive, from 5 ms to 0.25 s).
    """

    def __init__(
        self,
        mongo_url: str,
        exp_key: str,
        workdir: Optional[str] = None,
        reserve_timeout: Optional[float] = 180.0,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        on_job_done: Optional[Callable[[], None]] = None,
        max_jobs: Optional[int] = None,
        poll_interval: Optional[float] = None,
    ):
        self.handle = MongoJobs4.new_from_connection_str(mongo_url)
        self.trials = MongoTrials4(self.handle, exp_key=exp_key, refresh=False)
        self.exp_key = exp_key
        self.workdir = workdir
        self.reserve_timeout = reserve_timeout
        self.heartbeat_s = heartbeat_s
        self.on_job_done = on_job_done
        self.max_jobs = max_jobs
        self.poll = (MIN_POLL_S, MAX_POLL_S) if poll_interval is None else (poll_interval, poll_interval)
        self.host_id = owner_of(socket.gethostname(), os.getpid())
        self._domains: Dict[str, object] = {}
        self._current: Optional[dict] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()  # ends the heartbeat, when run() returns
        self._stop_requested = threading.Event()

    def reserve(self) -> Optional[dict]:
        """Claim a job, polling with backoff; ``None`` after ``reserve_timeout`` seconds or :meth:`stop`."""
        start = time.monotonic()
        pause, longest = self.poll
        while True:
            job = retrying(lambda: self.handle.reserve(self.host_id, exp_key=self.exp_key), "reserve")
            if job is not None:
                return job
            if self._stop_requested.is_set():
                return None
            if self.reserve_timeout is not None and time.monotonic() - start > self.reserve_timeout:
                return None
            time.sleep(pause)
            pause = min(pause * 1.5, longest)

    def stop(self) -> None:
        """Ask :meth:`run` to return once the current job (if any) is finished."""
        self._stop_requested.set()

    def _domain(self, job: dict):
        """The job's objective (hyperopt's pickled ``Domain``), loaded once per upload."""
        import cloudpickle

        protocol, name = job["misc"]["cmd"][0], job["misc"]["cmd"][1]
        if protocol == "cpickled fn":
            return cloudpickle.loads(name)
        if protocol != "domain_attachment":
            raise ValueError(f"unsupported job command protocol {protocol!r}")
        gfs = self.handle.gfs
        query = {"filename": name, "exp_key": job["exp_key"]}
        grid_out = retrying(lambda: gfs.find_one(query, sort=[("uploadDate", -1)]), "domain")
        if grid_out is None:
            raise OperationFailure(f"attachment {name!r} of experiment {job['exp_key']!r} not found")
        key = str(grid_out._id)
        if key not in self._domains:
            self._domains = {key: cloudpickle.loads(grid_out.read())}
        return self._domains[key]

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._lock:
                job = self._current
            if job is None:
                continue
            try:
                self.handle.jobs.update_one(
                    {"_id": job["_id"], "owner": self.host_id, "state": base.JOB_STATE_RUNNING},
                    {"$set": {"refresh_time": coarse_utcnow()}},
                )
            except Exception as exc:  # the next beat retries
                logger.debug("heartbeat failed: %r", exc)

    def _finish(self, job: dict, fields: dict) -> None:
        try:
            retrying(lambda: self.handle.update(job, fields), "result")
        except OperationFailure:
            logger.warning("Job %s was handed to another worker meanwhile; its result here is dropped.", job["_id"])

    def run_one(self, job: dict) -> None:
        """Evaluate one claimed job and write its result, or its failure with the traceback."""
        with self._lock:
            self._current = job
        try:
            domain = self._domain(job)
            ctrl = MongoCtrl(trials=self.trials, current_trial=job, read_only=False)
            spec = base.spec_from_misc(job["misc"])
            if self.workdir:
                os.makedirs(self.workdir, exist_ok=True)
                with working_dir(self.workdir):
                    result = domain.evaluate(spec, ctrl)
            else:
                result = domain.evaluate(spec, ctrl)
            result = base.SONify(result)
            for name, value in result.pop("attachments", {}).items():
                ctrl.attachments[name] = value
            self._finish(job, {"result": result, "state": base.JOB_STATE_DONE, "refresh_time": coarse_utcnow()})
            logger.debug("job finished: %s", job["_id"])
        except (Shutdown, KeyboardInterrupt):
            requeue_jobs(self.handle, {"_id": job["_id"], "owner": self.host_id}, "worker stopped")
            raise
        except Exception as exc:
            text = traceback.format_exc()
            logger.error("Trial %s failed:\n%s", job.get("tid"), text)
            error = (str(type(exc)), str(exc))
            failure = {"status": base.STATUS_FAIL, "error": list(error), "traceback": text}
            fields = {"state": base.JOB_STATE_ERROR, "error": error, "result": failure, "refresh_time": coarse_utcnow()}
            self._finish(job, fields)
        finally:
            with self._lock:
                self._current = None
        if self.on_job_done is not None:
            self.on_job_done()

    def run(self) -> int:
        """Take and evaluate jobs until none comes for ``reserve_timeout`` seconds; return the count."""
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        n_jobs = 0
        try:
            while self.max_jobs is None or n_jobs < self.max_jobs:
                job = self.reserve()
                if job is None:
                    logger.debug("No job for %s seconds: worker exiting.", self.reserve_timeout)
                    break
                self.run_one(job)
                n_jobs += 1
        finally:
            self._stop.set()
            self.handle.close()
        return n_jobs


def _run_worker_process(gpu: bool, hw_id: Optional[str], worker_kwargs: dict) -> int:
    """Body of a worker process: pin the device, handle SIGTERM, run a :class:`Worker`."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(hw_id) if gpu and hw_id is not None else ""
    signal.signal(signal.SIGTERM, _raise_shutdown)
    logger.debug("Worker working...")
    try:
        return Worker(**worker_kwargs).run()
    except (Shutdown, KeyboardInterrupt):
        return 0


class HyperoptWorker(multiprocessing.Process):
    """A worker process (spawned) that runs jobs until none comes for ``reserve_timeout`` seconds.

    Parameters
    ----------
    name
        Name of the process.
    progress_queue
        Receives ``None`` after each finished job (or ``None`` for no reporting).
    logging_queue
        Queue the process sends its log records to (see :func:`configure_asynchronous_logging`).
    exp_key
        Experiment whose jobs to take.
    workdir
        Directory each job runs in.
    gpu
        If ``True``, the process sees only GPU ``hw_id`` (``CUDA_VISIBLE_DEVICES``); else no GPU.
    hw_id
        GPU id.
    poll_interval
        Kept for compatibility: polling is adaptive (5 ms to 0.25 s).
    reserve_timeout
        Seconds without a job after which the process exits.
    mongo_url
        Database address.
    log_level, heartbeat_s
        Level of the records sent to the main process; seconds between check-ins.
    """

    _Popen = staticmethod(_spawn_popen)

    def __init__(
        self,
        name: str,
        progress_queue,
        logging_queue,
        exp_key: str,
        workdir: str = ".",
        gpu: bool = True,
        hw_id: str = None,
        poll_interval: float = 1.0,
        reserve_timeout: float = 30.0,
        mongo_url: str = "localhost:1234/scvi_db",
        log_level: int = logging.DEBUG,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ):
        super().__init__(name=name)
        self.progress_queue = progress_queue
        self.logging_queue = logging_queue
        self.exp_key = exp_key
        self.workdir = workdir
        self.gpu = gpu
        self.hw_id = hw_id
        self.poll_interval = poll_interval
        self.reserve_timeout = reserve_timeout
        self.mongo_url = mongo_url
        self.log_level = log_level
        self.heartbeat_s = heartbeat_s

    def run(self) -> None:
        if self.logging_queue is not None:
            configure_asynchronous_logging(self.logging_queue, level=self.log_level)
        progress = self.progress_queue
        kwargs = dict(
            mongo_url=self.mongo_url,
            exp_key=self.exp_key,
            workdir=self.workdir,
            reserve_timeout=self.reserve_timeout,
            heartbeat_s=self.heartbeat_s,
            on_job_done=(lambda: progress.put(None)) if progress is not None else None,
        )
        _run_worker_process(self.gpu, self.hw_id, kwargs)


def worker_main(argv: Optional[List[str]] = None) -> int:
    """Command line of a worker joining a search from any machine.

    ``python -m scvi.inference.autotune worker --mongo-url URL --exp-key KEY`` (or the console
    script ``scvi-autotune-worker --mongo-url URL --exp-key KEY``). It takes jobs of ``KEY`` until
    none comes for ``--reserve-timeout`` seconds, and hands back its job on SIGTERM or Ctrl-C.
    """
    import argparse

    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="scvi-autotune-worker", description="Evaluate the jobs of an scvi autotune search stored in MongoDB."
    )
    parser.add_argument("--mongo-url", required=True, help="e.g. mongodb://user:pw@host:1234/scvi_db?tls=true")
    parser.add_argument("--exp-key", required=True, help="the experiment's exp_key")
    parser.add_argument(
        "--reserve-timeout", type=float, default=180.0, help="exit after this many seconds without a job"
    )
    parser.add_argument("--workdir", default=None, help="directory to run the jobs in (default: current)")
    parser.add_argument("--gpu", default=None, help="GPU id this worker may use (sets CUDA_VISIBLE_DEVICES)")
    parser.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S, help="seconds between check-ins")
    parser.add_argument(
        "--poll-interval", type=float, default=None, help="fixed seconds between job look-ups (default: adaptive)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)

    from ..._settings import set_verbosity

    set_verbosity(args.log_level)
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    worker = Worker(
        args.mongo_url,
        args.exp_key,
        workdir=args.workdir,
        reserve_timeout=args.reserve_timeout,
        heartbeat_s=args.heartbeat,
        max_jobs=args.max_jobs,
        poll_interval=args.poll_interval,
    )
    logger.info("Worker %s joined experiment %r.", worker.host_id[0], args.exp_key)
    try:
        n_jobs = worker.run()
    except (Shutdown, KeyboardInterrupt):
        logger.debug("Worker stopped; its job (if any) went back to the queue.")
        return 0
    logger.info("Worker exiting after %d job(s).", n_jobs)
    return 0
