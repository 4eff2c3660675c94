"""Autotune end to end with real processes on a real (embedded) server, loopback only.

Slow (worker processes import torch): skipped in CI, run with ``pytest -m slow``.
"""
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hyperopt")
pytest.importorskip("secantus")

from hyperopt import hp  # noqa: E402

import _autotune_objectives as objectives  # noqa: E402
from scvi.inference._autotune.mongo import MongoJobs4, with_database  # noqa: E402
from scvi.inference._autotune.server import MongoServer  # noqa: E402
from scvi.inference.autotune import auto_tune_scvi_model  # noqa: E402

pytestmark = pytest.mark.slow

SPACE = {"x": hp.uniform("x", 0, 1)}
REPO_ROOT = Path(__file__).resolve().parents[2]
FAST = dict(reserve_timeout=60.0, fmin_timeout=60.0, mongo_port=0)


@pytest.fixture
def server(tmp_path):
    """An embedded server the test controls (stop/restart), stopped at the end."""
    srv = MongoServer(tmp_path / "db", port=0, backend="secantus").start()
    yield srv
    srv.stop()


def _markers(marker_dir):
    """(x, pid) of every evaluation recorded by ``objectives.recorded``."""
    return [(float(name.rsplit("_", 1)[0]), int(name.rsplit("_", 1)[1])) for name in os.listdir(marker_dir)]


def _run_in_thread(**kwargs):
    """Run ``auto_tune_scvi_model`` in a thread; return (thread, outcome dict)."""
    outcome = {}

    def target():
        try:
            outcome["result"] = auto_tune_scvi_model(**kwargs)
        except BaseException as exc:  # re-raised by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def _finish(thread, outcome, timeout=300):
    thread.join(timeout)
    assert not thread.is_alive(), "the search hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _done_docs(url, exp_key):
    handle = MongoJobs4.new_from_connection_str(url)
    try:
        return list(handle.jobs.find({"exp_key": exp_key, "state": 2}))
    finally:
        handle.close()


def test_parallel_two_cpu_workers_embedded_server(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    best, trials = auto_tune_scvi_model(
        "two_workers", custom_objective_hyperopt=objectives.recorded,
        objective_kwargs={"marker_dir": str(markers), "min_workers": 2, "seconds": 0.2}, space=SPACE,
        max_evals=10, save_path=str(tmp_path), n_cpu_workers=2, gpu_ids=[], **FAST,
    )
    assert len(trials.trials) == 10 and all(t["result"]["status"] == "ok" for t in trials.trials)
    evaluations = _markers(markers)
    assert len(evaluations) == 10 and len({x for x, _ in evaluations}) == 10  # no trial ran twice
    assert len({pid for _, pid in evaluations}) == 2  # both workers took jobs
    assert {t["result"]["pid"] for t in trials.trials} == {pid for _, pid in evaluations}
    assert os.getpid() not in {pid for _, pid in evaluations}
    with open(tmp_path / "trials_two_workers", "rb") as handle:
        loaded = pickle.load(handle)
    assert loaded.best_trial["tid"] == trials.best_trial["tid"]
    assert best == {"trained_on": dict(trials.best_trial["result"]["space"])}
    assert (tmp_path / "mongo").is_dir()
    # re-running the same experiment resumes it: only the missing evaluations are run
    _, more = auto_tune_scvi_model(
        "two_workers", custom_objective_hyperopt=objectives.recorded,
        objective_kwargs={"marker_dir": str(markers)}, space=SPACE, max_evals=13, save_path=str(tmp_path),
        n_cpu_workers=1, gpu_ids=[], **FAST,
    )
    assert len(more.trials) == 13 and len(_markers(markers)) == 13


def test_killed_worker_job_goes_back_to_queue(tmp_path, server):
    url = with_database(server.url, "scvi_db")
    markers = tmp_path / "markers"
    markers.mkdir()
    thread, outcome = _run_in_thread(
        exp_key="kill", custom_objective_hyperopt=objectives.recorded,
        objective_kwargs={"marker_dir": str(markers), "seconds": 2.0}, space=SPACE, max_evals=5,
        save_path=str(tmp_path), n_cpu_workers=2, gpu_ids=[], train_best=False, mongo_url=url, **FAST,
    )
    handle = MongoJobs4.new_from_connection_str(url)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:
        running = handle.jobs.find_one({"exp_key": "kill", "state": 1})
        if running is not None and list(markers.iterdir()):  # the objective is running
            victim = running
        time.sleep(0.05)
    assert victim is not None, "no job started"
    victim_pid = int(victim["owner"][0].rsplit(":", 1)[1])
    os.kill(victim_pid, signal.SIGKILL)
    trials = _finish(thread, outcome)
    assert len(trials.trials) == 5 and all(t["result"]["status"] == "ok" for t in trials.trials)
    redone = [t for t in trials.trials if t["tid"] == victim["tid"]][0]
    assert redone["result"]["pid"] != victim_pid  # finished by another worker
    handle.close()


def test_server_restart_mid_search(tmp_path, server):
    url = with_database(server.url, "scvi_db")
    thread, outcome = _run_in_thread(
        exp_key="restart", custom_objective_hyperopt=objectives.sleepy, objective_kwargs={"seconds": 0.3},
        space=SPACE, max_evals=10, save_path=str(tmp_path), n_cpu_workers=2, gpu_ids=[], train_best=False,
        mongo_url=url, **FAST,
    )
    deadline = time.monotonic() + 180
    while len(_done_docs(url, "restart")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = {d["tid"]: d["result"]["loss"] for d in _done_docs(url, "restart")}
    assert len(before) >= 3
    port = server.port
    server.stop()
    time.sleep(2.0)
    server.port = port
    server.start()
    trials = _finish(thread, outcome)
    assert len(trials.trials) == 10 and all(t["result"]["status"] == "ok" for t in trials.trials)
    after = {t["tid"]: t["result"]["loss"] for t in trials.trials}
    assert all(after[tid] == loss for tid, loss in before.items())  # earlier trials kept


def test_multiple_hosts_worker_joins_with_documented_command(tmp_path, server):
    url = with_database(server.url, "scvi_db")
    thread, outcome = _run_in_thread(
        exp_key="hosts", custom_objective_hyperopt=objectives.quadratic, space=SPACE, max_evals=6,
        save_path=str(tmp_path), multiple_hosts=True, mongo_url=url, train_best=False, fmin_timeout=None,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(Path(__file__).parent)]))
    worker = subprocess.Popen(
        [sys.executable, "-m", "scvi.inference.autotune", "worker", "--mongo-url", url, "--exp-key", "hosts",
         "--reserve-timeout", "60"],
        cwd=str(tmp_path), env=env,
    )
    try:
        trials = _finish(thread, outcome)
        assert len(trials.trials) == 6
        assert {t["result"]["pid"] for t in trials.trials} == {worker.pid}
    finally:
        worker.terminate()
        worker.wait(30)


def test_real_model_delayed_populating_custom_space_and_metric(tmp_path):
    from scvi.dataset._planted import planted_counts
    from scvi.inference import UnsupervisedTrainer

    planted = planted_counts(
        n_cells=90, n_genes=20, n_clusters=2, n_batches=2, n_de_genes=4, batch_effect=0.5, random_state=0
    )
    np.savez(tmp_path / "planted.npz", X=planted.X, batch_indices=planted.batch_indices, labels=planted.labels)
    dataset = objectives.PlantedFileDataset(str(tmp_path), delayed_populating=True)
    space = {
        "model_tunable_kwargs": {
            "n_latent": hp.choice("n_latent", [2, 4]),
            "dropout_rate": hp.uniform("dropout_rate", 0.1, 0.3),
        },
        "train_func_tunable_kwargs": {"lr": hp.loguniform("lr", -7.0, -4.0)},
    }
    best, trials = auto_tune_scvi_model(
        "real", gene_dataset=dataset, delayed_populating=True, space=space, metric_name="entropy_batch_mixing",
        posterior_name="train_set", use_batches=True, model_specific_kwargs={"n_hidden": 16},
        train_func_specific_kwargs={"n_epochs": 2}, max_evals=3, save_path=str(tmp_path), n_cpu_workers=2,
        gpu_ids=[], **FAST,
    )
    results = [t["result"] for t in trials.trials]
    assert len(results) == 3 and all(r["status"] == "ok" for r in results)
    assert all(0.0 <= r["loss"] <= np.log(2) + 1e-6 for r in results)  # batch-mixing entropy of 2 batches
    assert all(r["space"]["model_tunable_kwargs"]["n_latent"] in (2, 4) for r in results)
    populated_by = {int(p.name.split("_")[1]) for p in tmp_path.glob("populated_*")}
    assert populated_by - {os.getpid()}, "the dataset must be populated inside the workers"
    assert isinstance(best, UnsupervisedTrainer) and best.model.n_batch == 2
    assert best.model.n_latent == trials.best_trial["result"]["space"]["model_tunable_kwargs"]["n_latent"]
    assert (tmp_path / "best_model_real").exists()


def test_workers_dying_every_time_end_in_fmin_timeout_and_cleanup(tmp_path):
    from scvi.inference._autotune.driver import FminTimeoutError
    from scvi.inference._autotune import launcher

    started = []
    original = launcher.WorkerLauncherThread._start

    def spy(self, *args):
        worker = original(self, *args)
        started.append(worker.pid)
        return worker

    launcher.WorkerLauncherThread._start = spy
    try:
        with pytest.raises(FminTimeoutError, match="after all workers exited"):
            auto_tune_scvi_model(
                "dying", custom_objective_hyperopt=objectives.exits, space=SPACE, max_evals=2, save_path=str(tmp_path),
                n_cpu_workers=1, gpu_ids=[], reserve_timeout=60.0, fmin_timeout=2.0, mongo_port=0,
            )
    finally:
        launcher.WorkerLauncherThread._start = original
    assert len(started) == 3  # the worker and its two replacements
    for pid in started:  # all stopped, none left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # the server was stopped too: its data directory can be opened again
    MongoServer(tmp_path / "mongo" / "secantus", port=0, backend="secantus").start().stop()
