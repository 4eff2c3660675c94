"""Automatic hyperparameter search for scVI models with hyperopt, sequential or parallel.

In parallel mode, a MongoDB database holds the trials (``mongod`` if found on PATH, else the
embedded SecantusDB server, or an existing server given by ``mongo_url``), the search driver
suggests trials and local worker processes (one per GPU, plus CPU workers) train the models.
Workers on other machines join with::

    python -m scvi.inference.autotune worker --mongo-url mongodb://HOST:PORT/scvi_db --exp-key KEY

(also installed as the ``scvi-autotune-worker`` console script). Verbosity is set with
``logging.getLogger("scvi.inference.autotune").setLevel(...)``: WARNING shows a progress bar of
finished evaluations, INFO the number of jobs done, DEBUG the details of each training.
"""
import logging
import pickle
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type

from hyperopt import Trials

from .._utils import atomic_path, atomic_write
from ..dataset.dataset import DownloadableDataset, GeneExpressionDataset
from ..models import VAE
from ._autotune.driver import FminLauncherThread, FminProcess, FminTimeoutError
from ._autotune.logs import DispatchHandler, ProgressListener, StoppableThread, configure_asynchronous_logging
from ._autotune.mongo import MongoJobs4, MongoTrials4
from ._autotune.objective import check_space, default_space, fixed_kwargs, objective_function
from ._autotune.search import search_parallel, search_sequential
from ._autotune.launcher import WorkerLauncherThread
from ._autotune.workers import HyperoptWorker, worker_main
from .inference import UnsupervisedTrainer
from .trainer import Trainer

logger = logging.getLogger(__name__)

__all__ = [
    "auto_tune_scvi_model",
    "worker_main",
    "DispatchHandler",
    "FminLauncherThread",
    "FminProcess",
    "FminTimeoutError",
    "HyperoptWorker",
    "MongoJobs4",
    "MongoTrials4",
    "ProgressListener",
    "StoppableThread",
    "WorkerLauncherThread",
    "configure_asynchronous_logging",
    "DownloadableDataset",
    "GeneExpressionDataset",
    "Trainer",
    "UnsupervisedTrainer",
    "VAE",
]


def auto_tune_scvi_model(
    exp_key: str,
    gene_dataset: GeneExpressionDataset = None,
    delayed_populating: bool = False,
    custom_objective_hyperopt: Callable = None,
    objective_kwargs: Dict[str, Any] = None,
    model_class: VAE = VAE,
    trainer_class: Trainer = UnsupervisedTrainer,
    metric_name: str = None,
    metric_kwargs: Dict[str, Any] = None,
    posterior_name: str = "test_set",
    model_specific_kwargs: dict = None,
    trainer_specific_kwargs: dict = None,
    train_func_specific_kwargs: dict = None,
    space: dict = None,
    max_evals: int = 100,
    train_best: bool = True,
    pickle_result: bool = True,
    save_path: str = ".",
    use_batches: bool = False,
    parallel: bool = True,
    n_cpu_workers: int = None,
    gpu_ids: List[int] = None,
    n_workers_per_gpu: int = 1,
    reserve_timeout: float = 180.0,
    fmin_timeout: float = 300.0,
    fmin_timer: float = None,
    mongo_port: str = "1234",
    mongo_host: str = "localhost",
    db_name: str = "scvi_db",
    multiple_hosts: bool = False,
    mongo_url: Optional[str] = None,
) -> (Type[Trainer], Trials):
    """Search the hyperparameters of an scVI model; return the best trainer and hyperopt's trials.

    Convention: fixed parameters (``*_specific_kwargs``) take precedence over tunable ones
    (``space``). The default objective trains ``model_class`` with ``trainer_class`` and returns
    ``getattr(trainer, posterior_name).<metric_name>(**metric_kwargs)`` on the best state of the
    model (by default the marginal negative log-likelihood of ``test_set``, with early stopping
    on the held-out ELBO).

    Parameters
    ----------
    exp_key
        Name of the experiment in the database; re-running the same key resumes it (only the
        missing evaluations up to ``max_evals`` are run).
    gene_dataset
        The dataset (required unless ``custom_objective_hyperopt``).
    delayed_populating
        The dataset (a ``DownloadableDataset`` created with ``delayed_populating=True``) is
        populated inside each worker instead of travelling with the objective.
    custom_objective_hyperopt
        An objective ``f(space, is_best_training=False, **objective_kwargs)`` returning hyperopt's
        result (a loss or a dict with ``"loss"``, ``"status"`` and preferably ``"space"``), or
        the trainer when ``is_best_training``. It must be importable (not defined in
        ``__main__``) for workers to unpickle it.
    objective_kwargs
        Fixed keyword arguments of ``custom_objective_hyperopt``.
    model_class, trainer_class
        Model and trainer of the default objective.
    metric_name, metric_kwargs, posterior_name
        Metric minimised by the default objective (default ``"marginal_ll"`` with
        ``{"n_mc_samples": 100}``), read from the posterior ``posterior_name``.
    model_specific_kwargs, trainer_specific_kwargs, train_func_specific_kwargs
        Fixed keyword arguments of the model, the trainer and its ``train`` method.
    space
        Search space: a dict with up to three hyperopt sub-spaces under
        ``"model_tunable_kwargs"``, ``"trainer_tunable_kwargs"`` and
        ``"train_func_tunable_kwargs"``. Default: n_latent 5-15, n_hidden {64, 128, 256},
        n_layers 1-5, dropout_rate {0.1, 0.3, 0.5, 0.7}, reconstruction_loss {zinb, nb}, lr
        {0.01, 0.005, 0.001, 0.0005, 0.0001}.
    max_evals
        Number of evaluations of the objective.
    train_best
        Retrain the best configuration on the whole dataset and return its trainer.
    pickle_result
        Pickle the trials (``trials_<exp_key>``) and, with ``train_best``, the trainer
        (``best_trainer_<exp_key>``) and model weights (``best_model_<exp_key>``) in ``save_path``.
    save_path
        Where results and the database files (``mongo/``) go.
    use_batches
        Pass ``n_batch=gene_dataset.n_batches`` to the model (else 0).
    parallel
        Use the database and worker processes (else a sequential search in this process).
    n_cpu_workers
        CPU workers (default: the number of cores when no GPU is found, else 0).
    gpu_ids
        GPUs to use (default: all found); each worker sees only its GPU.
    n_workers_per_gpu
        Workers per GPU.
    reserve_timeout
        Seconds a worker waits for a job before exiting.
    fmin_timeout
        Seconds the search may still run after all local workers exited, before
        ``FminTimeoutError`` (``None``: wait).
    fmin_timer
        Seconds after which no new evaluation is started (parallel only); the search then
        returns the trials finished so far.
    mongo_port, mongo_host, db_name
        Where the local server is started (``mongo_host:mongo_port``) and the database name.
    multiple_hosts
        Start neither a server nor local workers: workers on other machines join with
        ``python -m scvi.inference.autotune worker --mongo-url ... --exp-key ...``, connecting
        to ``mongo_url`` (or ``mongodb://mongo_host:mongo_port/db_name``).
    mongo_url
        A ``mongodb://`` URI of an existing server (credentials, TLS and options are handled by
        pymongo); no server is started.

    Returns
    -------
    (best_trainer, trials)
        The trainer of the best configuration retrained on the whole dataset, and hyperopt's
        trials (``trials.trials``: one dict per evaluation, ``trials.best_trial``...). As in
        scVI 0.6, only ``trials`` is returned when ``train_best`` is ``False``.

    Raises
    ------
    ValueError
        On invalid arguments (named in the message).
    FminTimeoutError
        If the search outlives all local workers by ``fmin_timeout`` seconds.
    RuntimeError
        If every evaluation failed (the first traceback is in the message).

    Notes
    -----
    Parallel search: an exception in the objective marks that evaluation failed (state 3, with
    its traceback in ``result["traceback"]``) and the search goes on; the job of a worker that
    died (killed, out of memory) goes back to the queue and the worker is replaced; a worker
    on another machine that stops checking in for 60 s has its job handed back too. Sequential
    search: an exception stops the search, as in hyperopt.

    Examples
    --------
    >>> from scvi.dataset import CortexDataset  # doctest: +SKIP
    >>> best_trainer, trials = auto_tune_scvi_model("cortex", CortexDataset(), max_evals=10)  # doctest: +SKIP
    """
    _check_arguments(exp_key, gene_dataset, custom_objective_hyperopt, max_evals, parallel, posterior_name)
    if fmin_timer and train_best:
        logger.warning(
            "fmin_timer and train_best are both set: the run time will exceed fmin_timer by at least one full training."
        )
    logger.info("Starting experiment: %s", exp_key)
    objective, space = _build_objective(
        gene_dataset, delayed_populating, custom_objective_hyperopt, objective_kwargs, model_class, trainer_class,
        metric_name, metric_kwargs, posterior_name, model_specific_kwargs, trainer_specific_kwargs,
        train_func_specific_kwargs, use_batches, space,
    )
    if parallel:
        trials = search_parallel(
            objective, exp_key, space, max_evals=max_evals, save_path=save_path, n_cpu_workers=n_cpu_workers,
            gpu_ids=gpu_ids, n_workers_per_gpu=n_workers_per_gpu, reserve_timeout=reserve_timeout,
            fmin_timeout=fmin_timeout, fmin_timer=fmin_timer, mongo_port=mongo_port, mongo_host=mongo_host,
            db_name=db_name, multiple_hosts=multiple_hosts, mongo_url=mongo_url,
        )
    else:
        trials = search_sequential(objective, space, max_evals)

    best_trainer = _train_best(objective, space, trials) if train_best else None
    if pickle_result:
        _save_results(Path(save_path), exp_key, trials, best_trainer)
    return (best_trainer, trials) if train_best else trials


def _check_arguments(exp_key, gene_dataset, custom_objective, max_evals, parallel, posterior_name) -> None:
    if not isinstance(exp_key, str) or not exp_key:
        raise ValueError(f"`exp_key` must be a non-empty string; got {exp_key!r}")
    if custom_objective is None and gene_dataset is None:
        raise ValueError("`gene_dataset` is required unless `custom_objective_hyperopt` is given")
    if custom_objective is not None and not callable(custom_objective):
        raise TypeError(f"`custom_objective_hyperopt` must be callable; got {type(custom_objective).__name__}")
    if isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1:
        raise ValueError(f"`max_evals` must be a positive int; got {max_evals!r}")
    if not isinstance(posterior_name, str):
        raise ValueError(f"`posterior_name` must be a string such as 'test_set' or 'train_set'; got {posterior_name!r}")


def _build_objective(
    gene_dataset, delayed_populating, custom_objective, objective_kwargs, model_class, trainer_class, metric_name,
    metric_kwargs, posterior_name, model_specific_kwargs, trainer_specific_kwargs, train_func_specific_kwargs,
    use_batches, space,
):
    """The objective (a picklable partial) and the search space."""
    if custom_objective is not None:
        logger.info("Using custom objective function.")
        if space is None:
            space = default_space()
        return partial(custom_objective, **(objective_kwargs or {})), space
    if space is None:
        logger.debug("Using default parameter search space.")
        space = default_space()
    check_space(space)
    fixed = fixed_kwargs(model_specific_kwargs, trainer_specific_kwargs, train_func_specific_kwargs)
    logger.info(
        "Fixed parameters: \nmodel: \n%s\ntrainer: \n%s\ntrain method: \n%s",
        fixed["model"], fixed["trainer"], fixed["train_func"],
    )
    objective = partial(
        objective_function,
        gene_dataset=gene_dataset,
        delayed_populating=delayed_populating,
        model_class=model_class,
        trainer_class=trainer_class,
        metric_name=metric_name,
        metric_kwargs=metric_kwargs,
        posterior_name=posterior_name,
        model_specific_kwargs=fixed["model"],
        trainer_specific_kwargs=fixed["trainer"],
        train_func_specific_kwargs=fixed["train_func"],
        use_batches=use_batches,
    )
    return objective, space


def _train_best(objective: Callable, space: dict, trials):
    """Retrain the best configuration on the whole dataset."""
    from hyperopt import STATUS_OK, space_eval

    ok = [t for t in trials.trials if t["result"].get("status") == STATUS_OK]
    if not ok:
        raise RuntimeError(f"no evaluation succeeded; nothing to retrain.{_first_failure(trials)}")
    best = trials.best_trial
    best_space = best["result"].get("space")
    if best_space is None:
        best_space = space_eval(space, trials.argmin)
    logger.debug("Training best model with full training set")
    return objective(best_space, is_best_training=True)


def _first_failure(trials) -> str:
    """The traceback of one failed evaluation stored in the database, if any (for error messages)."""
    handle = getattr(trials, "handle", None)
    if handle is None:
        return ""
    query = {"state": 3} if trials._exp_key is None else {"state": 3, "exp_key": trials._exp_key}
    doc = handle.jobs.find_one(query)
    traceback = doc and doc.get("result", {}).get("traceback")
    return f" First failure:\n{traceback}" if traceback else ""


def _save_results(save_path: Path, exp_key: str, trials, best_trainer) -> None:
    """Pickle the trials and, if any, the best trainer and its model's weights (atomic writes)."""
    import torch

    if best_trainer is not None:
        logger.debug("Pickling best model and trainer")
        model = getattr(best_trainer, "model", None)
        if model is not None:
            model.cpu()
            with atomic_path(save_path / f"best_model_{exp_key}") as tmp:
                torch.save(model.state_dict(), tmp)
        try:
            with atomic_write(save_path / f"best_trainer_{exp_key}") as handle:
                pickle.dump(best_trainer, handle)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            warnings.warn(
                f"the best trainer could not be pickled ({exc}); its model weights were saved",
                RuntimeWarning,
                stacklevel=3,
            )
    logger.debug("Pickling Trials object")
    with atomic_write(save_path / f"trials_{exp_key}") as handle:
        pickle.dump(trials, handle)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m scvi.inference.autotune worker --mongo-url URL --exp-key KEY``: run a worker."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "worker":
        sys.stderr.write("usage: python -m scvi.inference.autotune worker --mongo-url URL --exp-key KEY [options]\n")
        return 2
    return worker_main(argv[1:])


if __name__ == "__main__":
    import os
    import sys

    _code = main()
    # a worker's work is saved: skip the interpreter teardown (torch's alone takes seconds)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_code)
