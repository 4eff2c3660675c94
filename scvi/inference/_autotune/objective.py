"""The default objective: train a model with the sampled hyperparameters and read a metric.

Convention (scVI 0.6): fixed parameters (``*_specific_kwargs``) take precedence over tunable
ones (the sampled ``space``).
"""
import copy
import datetime
import logging
import multiprocessing
import time
from typing import Any, Dict, Optional, Union

import numpy as np

logger = logging.getLogger("scvi.inference.autotune")

SPACE_KEYS = ("model_tunable_kwargs", "trainer_tunable_kwargs", "train_func_tunable_kwargs")

#: Early stopping added when ``trainer_specific_kwargs`` has no ``early_stopping_kwargs``.
DEFAULT_EARLY_STOPPING = {
    "early_stopping_metric": "elbo",
    "save_best_state_metric": "elbo",
    "patience": 50,
    "threshold": 0,
    "reduce_lr_on_plateau": True,
    "lr_patience": 25,
    "lr_factor": 0.2,
}
DEFAULT_METRIC = "marginal_ll"
DEFAULT_METRIC_KWARGS = {"n_mc_samples": 100}
DEFAULT_N_EPOCHS = 1000


def default_space() -> Dict[str, Dict[str, Any]]:
    """scVI 0.6's search space: n_latent 5-15, n_hidden {64, 128, 256}, n_layers 1-5, dropout
    {0.1, 0.3, 0.5, 0.7}, reconstruction_loss {zinb, nb}, lr {0.01, 0.005, 0.001, 0.0005, 0.0001}."""
    from hyperopt import hp

    return {
        "model_tunable_kwargs": {
            "n_latent": 5 + hp.randint("n_latent", 11),  # [5, 15]
            "n_hidden": hp.choice("n_hidden", [64, 128, 256]),
            "n_layers": 1 + hp.randint("n_layers", 5),  # [1, 5]
            "dropout_rate": hp.choice("dropout_rate", [0.1, 0.3, 0.5, 0.7]),
            "reconstruction_loss": hp.choice("reconstruction_loss", ["zinb", "nb"]),
        },
        "train_func_tunable_kwargs": {"lr": hp.choice("lr", [0.01, 0.005, 0.001, 0.0005, 0.0001])},
    }


def check_space(space: Any) -> None:
    """Raise a ``ValueError`` unless ``space`` is a dict whose keys are among :data:`SPACE_KEYS`."""
    if not isinstance(space, dict):
        raise ValueError(f"`space` must be a dict with keys among {', '.join(SPACE_KEYS)}; got {type(space).__name__}")
    unknown = sorted(set(space) - set(SPACE_KEYS))
    if unknown:
        allowed = ", ".join(repr(k) for k in SPACE_KEYS)
        raise ValueError(f"`space` keys must be among {allowed}; got {', '.join(map(repr, unknown))}")


def fixed_kwargs(
    model_specific_kwargs: Optional[dict],
    trainer_specific_kwargs: Optional[dict],
    train_func_specific_kwargs: Optional[dict],
) -> Dict[str, dict]:
    """Copies of the fixed keyword arguments with scVI 0.6's defaults added (early stopping on the ELBO)."""
    model = dict(model_specific_kwargs or {})
    trainer = copy.deepcopy(trainer_specific_kwargs or {})
    train_func = dict(train_func_specific_kwargs or {})
    if "early_stopping_kwargs" not in trainer:
        logger.debug("Adding default early stopping behaviour.")
        trainer["early_stopping_kwargs"] = dict(DEFAULT_EARLY_STOPPING)
        trainer["metrics_to_monitor"] = list(trainer.get("metrics_to_monitor") or []) + ["elbo"]
    return {"model": model, "trainer": trainer, "train_func": train_func}


def objective_function(
    space: dict,
    gene_dataset,
    delayed_populating: bool = False,
    model_class=None,
    trainer_class=None,
    metric_name: Optional[str] = None,
    metric_kwargs: Optional[Dict[str, Any]] = None,
    posterior_name: str = "test_set",
    model_specific_kwargs: Optional[dict] = None,
    trainer_specific_kwargs: Optional[dict] = None,
    train_func_specific_kwargs: Optional[dict] = None,
    use_batches: bool = False,
    is_best_training: bool = False,
) -> Union[Dict[str, Any], Any]:
    """Train ``model_class`` with the hyperparameters of ``space``; return hyperopt's result dict.

    Parameters
    ----------
    space
        A sample of the search space: up to three dicts under :data:`SPACE_KEYS`.
    gene_dataset
        The dataset (populated here first when ``delayed_populating``).
    delayed_populating
        Call ``gene_dataset.populate()`` before training (the dataset travels unpopulated).
    model_class, trainer_class
        Default ``VAE`` and ``UnsupervisedTrainer``.
    metric_name, metric_kwargs, posterior_name
        The loss is ``getattr(trainer, posterior_name).<metric_name>(**metric_kwargs)``, on the
        best state of the model; default ``marginal_ll(n_mc_samples=100)`` on ``test_set``.
    model_specific_kwargs, trainer_specific_kwargs, train_func_specific_kwargs
        Fixed parameters (precedence over ``space``).
    use_batches
        Pass ``n_batch=gene_dataset.n_batches`` to the model (else 0).
    is_best_training
        Train on the whole dataset without monitoring and return the trainer.

    Returns
    -------
    dict or Trainer
        ``{"loss", "early_stopping_loss", "early_stopping_loss_is_best", "best_epoch",
        "elapsed_time", "status", "history", "space", "worker_name"}``; the trainer when
        ``is_best_training``.
    """
    from hyperopt import STATUS_FAIL, STATUS_OK

    if model_class is None:
        from ...models import VAE as model_class
    if trainer_class is None:
        from ..inference import UnsupervisedTrainer as trainer_class
    if metric_name is None:
        metric_name = DEFAULT_METRIC
        metric_kwargs = dict(DEFAULT_METRIC_KWARGS) if metric_kwargs is None else metric_kwargs
    metric_kwargs = dict(metric_kwargs or {})
    if delayed_populating and hasattr(gene_dataset, "populate"):
        gene_dataset.populate()

    start_time = time.monotonic()
    check_space(space)
    space = copy.deepcopy(space)
    fixed = fixed_kwargs(model_specific_kwargs, trainer_specific_kwargs, train_func_specific_kwargs)
    if "use_cuda" not in fixed["trainer"]:
        import torch

        fixed["trainer"]["use_cuda"] = bool(torch.cuda.device_count())
    fixed["trainer"]["show_progbar"] = False
    if is_best_training:
        fixed["trainer"].update(train_size=1.0, frequency=None, early_stopping_kwargs={})
        fixed["trainer"].pop("metrics_to_monitor", None)
    else:
        fixed["trainer"]["frequency"] = 1
    model_kwargs = {**space.get("model_tunable_kwargs", {}), **fixed["model"]}
    trainer_kwargs = {**space.get("trainer_tunable_kwargs", {}), **fixed["trainer"]}
    train_kwargs = {**space.get("train_func_tunable_kwargs", {}), **fixed["train_func"]}
    train_kwargs.setdefault("n_epochs", DEFAULT_N_EPOCHS)
    if not is_best_training:
        logger.info(
            "Parameters being tested: \nmodel: \n%s\ntrainer: \n%s\ntrain method: \n%s",
            model_kwargs, trainer_kwargs, train_kwargs,
        )

    logger.debug("Instantiating model")
    n_batch = gene_dataset.n_batches * bool(use_batches)
    model = model_class(n_input=gene_dataset.nb_genes, n_batch=n_batch, **model_kwargs)
    logger.debug("Instantiating trainer")
    trainer = trainer_class(model, gene_dataset, **trainer_kwargs)
    logger.debug("Starting training")
    trainer.train(**train_kwargs)
    logger.debug("Finished training")
    elapsed_time = time.monotonic() - start_time
    if is_best_training:
        return trainer

    early_stopping = getattr(trainer, "early_stopping", None)
    metric = (trainer_kwargs.get("early_stopping_kwargs") or {}).get("early_stopping_metric")
    if metric and early_stopping is not None:
        early_stopping_loss_is_best = True
        best_epoch = int(getattr(trainer, "best_epoch", len(trainer.history.get(f"{metric}_{early_stopping.on}", []))))
        early_stopping_loss = float(early_stopping.best_performance)
        metric = f"{metric}_{early_stopping.on}"
    else:
        early_stopping_loss_is_best = False
        metric = "elbo_test_set"
        history = trainer.history.get(metric) or [np.nan]
        early_stopping_loss = float(history[-1])
        best_epoch = len(trainer.history.get(metric, []))
    if getattr(trainer, "best_state_dict", None) is not None:
        model.load_state_dict(trainer.best_state_dict)

    posterior = getattr(trainer, posterior_name, None)
    if posterior is None:
        raise ValueError(f"`posterior_name` {posterior_name!r} is not a posterior of {type(trainer).__name__}")
    method = getattr(posterior, metric_name, None)
    if not callable(method):
        raise ValueError(f"`metric_name` {metric_name!r} is not a method of {type(posterior).__name__}")
    loss = float(np.asarray(method(**metric_kwargs)))
    logger.debug(
        "Training of %d epochs finished in %s with loss = %s",
        len(trainer.history.get(metric, [])),
        datetime.timedelta(seconds=elapsed_time),
        loss,
    )
    return {
        "loss": loss,
        "early_stopping_loss": early_stopping_loss,
        "early_stopping_loss_is_best": early_stopping_loss_is_best,
        "best_epoch": best_epoch,
        "elapsed_time": elapsed_time,
        "status": STATUS_FAIL if np.isnan(loss) else STATUS_OK,
        "history": {key: [float(v) for v in values] for key, values in dict(trainer.history).items()},
        "space": space,
        "worker_name": multiprocessing.current_process().name,
    }
