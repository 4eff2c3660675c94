"""Logging across the search's processes, and the progress of finished evaluations.

Worker processes send their log records through a queue (:func:`configure_asynchronous_logging`);
the main process hands each record to the logger of the same name (:class:`DispatchHandler`), so
the levels set in the main process (``logging.getLogger("scvi.inference.autotune")``) decide what
is shown, as in scVI 0.6.
"""
import logging
import logging.handlers
import queue
import threading
from typing import Optional

logger = logging.getLogger("scvi.inference.autotune")


class StoppableThread(threading.Thread):
    """A thread with a ``stop()`` method setting ``stop_event``, which ``run`` watches."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the thread to stop."""
        self.stop_event.set()


class DispatchHandler(logging.Handler):
    """Hands each received record to the logger named in the record, if it is enabled for its level."""

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)


def configure_asynchronous_logging(logging_queue, level: int = logging.DEBUG) -> None:
    """In a worker process: send the records of the ``scvi`` and ``hyperopt`` loggers to ``logging_queue``.

    Parameters
    ----------
    logging_queue
        A multiprocessing queue read by a ``QueueListener`` with a :class:`DispatchHandler` in the
        main process.
    level
        Lowest level sent (records below it are dropped here, cheaply).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.QueueHandler):
            root.removeHandler(handler)
    queue_handler = logging.handlers.QueueHandler(logging_queue)
    root.addHandler(queue_handler)
    root.setLevel(logging.WARNING)
    for name in ("scvi", "hyperopt"):
        named = logging.getLogger(name)
        for handler in list(named.handlers):  # the main process shows them
            named.removeHandler(handler)
        named.propagate = True
        named.setLevel(level)
    logger.debug("Asynchronous logging has been set.")


def start_log_listener(logging_queue) -> logging.handlers.QueueListener:
    """In the main process: dispatch the records arriving on ``logging_queue``; ``stop()`` it at the end."""
    listener = logging.handlers.QueueListener(logging_queue, DispatchHandler())
    listener.start()
    return listener


class ProgressListener(StoppableThread):
    """Counts finished evaluations arriving on ``progress_queue`` (one item each, or an int count).

    Logs ``"<n> job.s done"`` at INFO and advances ``pbar`` (a tqdm bar) if given.
    """

    def __init__(self, progress_queue, pbar=None):
        super().__init__(name="Progress Listener", daemon=True)
        self.progress_queue = progress_queue
        self.pbar = pbar
        self.n_done = 0

    def _consume(self, item) -> None:
        n = item if isinstance(item, int) and item > 0 else 1
        self.n_done += n
        logger.info("%d job.s done", self.n_done)
        if self.pbar is not None:
            self.pbar.update(n)

    def run(self) -> None:
        logger.debug("Listener listening...")
        while not self.stop_event.is_set():
            try:
                self._consume(self.progress_queue.get(timeout=0.05))
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # queue closed
                break
        while True:  # drain what arrived before stop
            try:
                self._consume(self.progress_queue.get_nowait())
            except (queue.Empty, EOFError, OSError, ValueError):
                break
        if self.pbar is not None:
            self.pbar.close()


def progress_bar(total: int, disable: Optional[bool] = None):
    """The search's progress bar: shown when the autotune logger is at WARNING or above (scVI 0.6)."""
    from ..._utils import track

    if disable is None:
        disable = logger.getEffectiveLevel() < logging.WARNING
    return track(iter(()), description="autotune", total=total, disable=disable)
