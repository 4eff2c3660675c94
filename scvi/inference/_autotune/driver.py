"""The search driver: hyperopt's ``fmin`` loop over a MongoDB trials store, polling fast.

hyperopt's ``FMinIter`` sleeps a fixed ``poll_interval_secs`` (1 s) between looks at the
database, which costs about a second per trial. :class:`FastFMinIter` polls adaptively: a few
milliseconds while trials are moving, backing off to :data:`MAX_POLL_S` while workers train. It
also puts back in the queue the jobs of workers that stopped checking in, can be cancelled from
another thread, and honours its ``timeout`` while waiting for the last jobs.
"""
import logging
import multiprocessing
import time
from typing import Any, Callable, Optional

from hyperopt import base, tpe
from hyperopt.fmin import FMinIter

from ..._utils import check_random_state
from .logs import StoppableThread
from .mongo import MongoJobs4, MongoTrials4, requeue_stale, retrying

logger = logging.getLogger("scvi.inference.autotune")

#: Shortest and longest pause between two looks at the database.
MIN_POLL_S = 0.005
MAX_POLL_S = 0.5
#: A running job whose worker has not checked in for this long goes back to the queue.
DEFAULT_LEASE_S = 60.0


class FminTimeoutError(Exception):
    """Raised if the minimization has not finished ``fmin_timeout`` seconds after all workers stopped."""


class _AdaptivePoll:
    """Pause lengths that reset to ``low`` when the watched fingerprint changes and grow otherwise."""

    def __init__(self, low: float = MIN_POLL_S, high: float = MAX_POLL_S, factor: float = 1.5):
        self.low, self.high, self.factor = low, high, factor
        self._current = low
        self._last = None

    def next(self, fingerprint: Any) -> float:
        if fingerprint != self._last:
            self._last = fingerprint
            self._current = self.low
        else:
            self._current = min(self._current * self.factor, self.high)
        return self._current


class FastFMinIter(FMinIter):
    """``FMinIter`` with adaptive polling, stale-job requeueing, cancellation and a bounded wait."""

    def __init__(self, *args, lease_s: Optional[float] = DEFAULT_LEASE_S, fixed_poll: Optional[float] = None, **kwargs):
        self._poll = _AdaptivePoll() if fixed_poll is None else _AdaptivePoll(fixed_poll, fixed_poll)
        self._lease_s = lease_s
        self._last_requeue = time.monotonic()
        super().__init__(*args, **kwargs)

    @property
    def poll_interval_secs(self) -> float:
        """The next pause: short while trials change, longer while they do not."""
        self._maybe_requeue_stale()
        trials = getattr(self.trials, "_trials", [])
        fingerprint = (len(trials), sum(int(t.get("version", 0)) for t in trials))
        return self._poll.next(fingerprint)

    @poll_interval_secs.setter
    def poll_interval_secs(self, value: float) -> None:
        """Ignored: ``FMinIter.__init__`` sets hyperopt's fixed interval, replaced here by adaptive polling."""

    def _maybe_requeue_stale(self) -> None:
        if not self._lease_s or time.monotonic() - self._last_requeue < self._lease_s / 4:
            return
        self._last_requeue = time.monotonic()
        requeue_stale(self.trials.handle, self.trials._exp_key, self._lease_s)

    def _timed_out(self) -> bool:
        return self.timeout is not None and time.perf_counter() - self.start_time >= self.timeout

    def block_until_done(self) -> None:
        """Wait for queued and running jobs, unless cancelled or past ``timeout``."""
        unfinished = [base.JOB_STATE_NEW, base.JOB_STATE_RUNNING]
        while not self.is_cancelled and not self._timed_out():
            if self.trials.count_by_state_unsynced(unfinished) == 0:
                break
            time.sleep(self.poll_interval_secs)
        self.trials.refresh()


class _ProgressContext:
    """What ``FMinIter`` expects from a progress callback: ``update(n)`` and ``postfix``."""

    def __init__(self, on_progress: Callable[[int], None], initial: int):
        self.on_progress = on_progress
        self.n_done = initial
        self.postfix = ""
        if initial:  # a resumed experiment: count the evaluations already done
            on_progress(initial)

    def update(self, n: int) -> None:
        self.n_done += n
        self.on_progress(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_fmin(
    trials: MongoTrials4,
    fn: Callable,
    space: Any,
    algo: Optional[Callable] = None,
    max_evals: Optional[int] = None,
    timeout: Optional[float] = None,
    rstate=None,
    on_progress: Optional[Callable[[int], None]] = None,
    lease_s: Optional[float] = DEFAULT_LEASE_S,
    poll_interval: Optional[float] = None,
) -> MongoTrials4:
    """Run hyperopt's minimization loop on a MongoDB trials store; workers evaluate the jobs.

    Parameters
    ----------
    trials
        The store; its ``exp_key`` names the experiment. Existing trials of the experiment count
        towards ``max_evals`` (re-running resumes).
    fn, space, algo
        Objective, search space and suggestion algorithm (default ``tpe.suggest``), as in
        ``hyperopt.fmin``.
    max_evals
        Total number of evaluations of the experiment.
    timeout
        Seconds after which no new job is queued and the loop returns without waiting.
    rstate
        ``numpy.random.Generator``, seed, or ``None`` (drawn from numpy's global state).
    on_progress
        Called with the number of newly finished evaluations.
    lease_s
        Running jobs whose worker has not checked in for this long go back to the queue.
    poll_interval
        Fixed pause between two looks at the database (``None``: adaptive, 5 ms to 0.5 s).

    Returns
    -------
    MongoTrials4
        ``trials``, refreshed.
    """
    import sys

    domain = base.Domain(fn, space)
    iterator = FastFMinIter(
        algo or tpe.suggest,
        domain,
        trials,
        rstate=check_random_state(rstate),
        max_evals=sys.maxsize if max_evals is None else max_evals,
        timeout=timeout,
        verbose=on_progress is not None,
        show_progressbar=(lambda initial, total: _ProgressContext(on_progress, initial)) if on_progress else False,
        max_queue_len=1,
        lease_s=lease_s,
        fixed_poll=poll_interval,
    )
    iterator.exhaust()
    return trials


class FminLauncherThread(StoppableThread):
    """Runs the minimization (:func:`run_fmin`) and puts the resulting trials in ``queue``.

    The loop runs in this thread (it only waits on the database), so that stopping it is clean:
    :meth:`stop` cancels it at its next poll. An exception is put in ``queue`` instead of trials.

    Parameters
    ----------
    logging_queue
        Unused (kept for compatibility: the loop logs in this process).
    queue
        Receives the trials object (or the exception raised).
    objective_hyperopt, exp_key, space, algo, max_evals
        As in :func:`run_fmin`.
    fmin_timer
        Seconds after which the search stops queuing new jobs and returns.
    mongo_url
        Database address (see :func:`~scvi.inference._autotune.mongo.to_mongodb_uri`).
    on_progress, lease_s, rstate, poll_interval
        As in :func:`run_fmin`.
    """

    def __init__(
        self,
        logging_queue,
        queue,
        objective_hyperopt: Callable,
        exp_key: str,
        space: dict,
        algo: Callable = tpe.suggest,
        max_evals: int = 100,
        fmin_timer: float = None,
        mongo_url: str = "localhost:1234/scvi_db",
        on_progress: Optional[Callable[[int], None]] = None,
        lease_s: Optional[float] = DEFAULT_LEASE_S,
        rstate=None,
        poll_interval: Optional[float] = None,
    ):
        super().__init__(name="Fmin Launcher", daemon=True)
        self.logging_queue = logging_queue
        self.queue = queue
        self.objective_hyperopt = objective_hyperopt
        self.exp_key = exp_key
        self.space = space
        self.algo = algo
        self.max_evals = max_evals
        self.fmin_timer = fmin_timer
        self.mongo_url = mongo_url
        self.on_progress = on_progress
        self.lease_s = lease_s
        self.rstate = rstate
        self.poll_interval = poll_interval
        self.trials: Optional[MongoTrials4] = None

    def stop(self) -> None:
        """Cancel the minimization at its next poll."""
        super().stop()
        if self.trials is not None:
            self.trials._fmin_cancelled = True

    def run(self) -> None:
        try:
            logger.debug("Instantiating trials object.")
            handle = MongoJobs4.new_from_connection_str(self.mongo_url)
            self.trials = MongoTrials4(handle, exp_key=self.exp_key)
            if self.stop_event.is_set():
                self.trials._fmin_cancelled = True
            if self.fmin_timer is not None:
                logger.info("Timer set, fmin will run for at most %s seconds.", self.fmin_timer)
            logger.debug("Calling fmin.")
            run_fmin(
                self.trials,
                self.objective_hyperopt,
                self.space,
                algo=self.algo,
                max_evals=self.max_evals,
                timeout=self.fmin_timer,
                rstate=self.rstate,
                on_progress=self.on_progress,
                lease_s=self.lease_s,
                poll_interval=self.poll_interval,
            )
            self.trials._fmin_cancelled = False
            self.queue.put(self.trials)
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            logger.debug("fmin failed: %r", exc)
            self.queue.put(exc)


class FminProcess(multiprocessing.Process):
    """Runs :func:`run_fmin` in a separate process and puts the trials (without handle) in ``queue``.

    Kept for compatibility with scVI 0.6; :func:`~scvi.inference.autotune.auto_tune_scvi_model`
    runs the loop in a thread (:class:`FminLauncherThread`), which can be cancelled cleanly.
    """

    def __init__(
        self,
        logging_queue,
        queue,
        objective_hyperopt: Callable,
        space: dict,
        exp_key: str,
        mongo_url: str = "localhost:1234/scvi_db",
        algo: Callable = tpe.suggest,
        max_evals: int = 100,
        show_progressbar: bool = False,
    ):
        super().__init__(name="Fmin")
        self.logging_queue = logging_queue
        self.queue = queue
        self.objective_hyperopt = objective_hyperopt
        self.space = space
        self.exp_key = exp_key
        self.mongo_url = mongo_url
        self.algo = algo
        self.max_evals = max_evals
        self.show_progressbar = show_progressbar

    def run(self) -> None:
        from .logs import configure_asynchronous_logging

        if self.logging_queue is not None:
            configure_asynchronous_logging(self.logging_queue)
        trials = MongoTrials4(MongoJobs4.new_from_connection_str(self.mongo_url), exp_key=self.exp_key)
        run_fmin(trials, self.objective_hyperopt, self.space, algo=self.algo, max_evals=self.max_evals)
        retrying(trials.refresh, "refresh")
        self.queue.put(trials)
