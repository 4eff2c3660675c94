"""Autotune machinery, fast: the pymongo-4 trials store, job claiming, requeueing, the embedded
server, the driver loop with in-process workers, argument checking and the sequential search."""
import os
import pickle
import queue
import threading
import time

import numpy as np
import pytest

hyperopt = pytest.importorskip("hyperopt")
pytest.importorskip("secantus")

from hyperopt import hp  # noqa: E402
from hyperopt.mongoexp import OperationFailure  # noqa: E402

from scvi.inference._autotune.driver import FminTimeoutError, _AdaptivePoll, run_fmin  # noqa: E402
from scvi.inference._autotune.mongo import (  # noqa: E402
    MongoJobs4,
    MongoTrials4,
    requeue_stale,
    retrying,
    to_mongodb_uri,
    with_database,
)
from scvi.inference._autotune.search import _wait_for_result  # noqa: E402
from scvi.inference._autotune.server import MongoServer  # noqa: E402
from scvi.inference._autotune.launcher import resolve_worker_counts  # noqa: E402
from scvi.inference._autotune.workers import Worker, worker_main  # noqa: E402

import _autotune_objectives as objectives  # noqa: E402

SPACE = {"x": hp.uniform("x", 0, 1)}


@pytest.fixture
def server(tmp_path):
    """An embedded server on a free loopback port, stopped at the end."""
    srv = MongoServer(tmp_path / "db", port=0, backend="secantus").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def autotune():
    return pytest.importorskip("scvi.inference.autotune")


def _url(server, db="scvi_db"):
    return with_database(server.url, db)


def _run_with_thread_workers(url, exp_key, fn, max_evals, n_workers=2):
    workers = [Worker(url, exp_key, reserve_timeout=60.0) for _ in range(n_workers)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    trials = MongoTrials4(url, exp_key=exp_key)
    run_fmin(trials, fn, SPACE, max_evals=max_evals, rstate=0)
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return trials


@pytest.mark.parametrize(
    "url, expected",
    [
        ("localhost:1234/scvi_db", ("mongodb://localhost:1234/scvi_db", "scvi_db")),
        ("mongo://h:1/db/jobs", ("mongodb://h:1/db", "db")),
        ("mongodb://u:p@h:1/o?authSource=admin&tls=true", ("mongodb://u:p@h:1/o?authSource=admin&tls=true", "o")),
        ("mongodb://h:1", ("mongodb://h:1", "scvi_db")),
    ],
)
def test_to_mongodb_uri(url, expected):
    assert to_mongodb_uri(url) == expected


@pytest.mark.parametrize(
    "bad, match", [("", "non-empty"), ("http://h:1/db", "scheme"), ("mongodb://h:notaport/db", "not a valid")]
)
def test_to_mongodb_uri_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        to_mongodb_uri(bad)


def test_with_database_keeps_credentials_and_options():
    assert with_database("mongodb://u:p@h1:1,h2:2/?tls=true", "db") == "mongodb://u:p@h1:1,h2:2/db?tls=true"


def test_search_with_two_workers_keeps_hyperopts_format(server):
    url = _url(server)
    trials = _run_with_thread_workers(url, "quad", objectives.quadratic, max_evals=25)
    assert len(trials.trials) == 25
    assert all(t["state"] == hyperopt.JOB_STATE_DONE for t in trials.trials)
    assert sorted(t["tid"] for t in trials.trials) == list(range(25))  # each trial once
    # TPE concentrates around the optimum: the best is much better than a random draw
    assert trials.best_trial["result"]["loss"] < 0.01
    # hyperopt's own MongoTrials (pymongo 4 can still read) sees the same documents
    from hyperopt.mongoexp import MongoTrials

    theirs = MongoTrials(f"mongo://127.0.0.1:{server.port}/scvi_db/jobs", exp_key="quad")
    assert sorted(t["tid"] for t in theirs.trials) == list(range(25))
    assert theirs.best_trial["result"]["loss"] == trials.best_trial["result"]["loss"]


def test_failed_trial_keeps_traceback_and_search_goes_on(server):
    url = _url(server)
    trials = _run_with_thread_workers(url, "fails", objectives.fails_above, max_evals=12)
    docs = list(trials.handle.jobs.find({"exp_key": "fails"}))
    failed = [d for d in docs if d["state"] == hyperopt.JOB_STATE_ERROR]
    assert len(docs) == 12 and failed, "some x > 0.5 must have been drawn and failed"
    assert all("planted failure" in d["result"]["traceback"] for d in failed)
    assert all(d["result"]["status"] == hyperopt.STATUS_FAIL and "RuntimeError" in d["error"][0] for d in failed)
    assert len(trials.trials) == 12 - len(failed)  # hyperopt's view: errors are not trials


def test_no_successful_trial_gives_a_clear_error(server, autotune):
    trials = _run_with_thread_workers(_url(server), "allfail", lambda s: objectives.fails_above(s, threshold=-1), 3)
    with pytest.raises(RuntimeError, match="(?s)no evaluation succeeded.*planted failure"):
        autotune._train_best(objectives.quadratic, SPACE, trials)


def test_stale_job_is_requeued_and_late_result_refused(server):
    url = _url(server)
    trials = MongoTrials4(url, exp_key="stale")
    misc = {"tid": 0, "cmd": None, "idxs": {}, "vals": {}}
    trials.insert_trial_docs(trials.new_trial_docs([0], [None], [{"status": "new"}], [misc]))
    handle = trials.handle
    job = handle.reserve(["ghost:1"], exp_key="stale")
    assert job is not None and handle.reserve(["other:2"], exp_key="stale") is None  # claimed once
    handle.jobs.update_one({"_id": job["_id"]}, {"$set": {"refresh_time": job["refresh_time"].replace(year=2000)}})
    assert requeue_stale(handle, "stale", lease_s=60) == 1
    again = handle.reserve(["other:2"], exp_key="stale")
    assert again is not None and again["_id"] == job["_id"] and again["version"] > job["version"]
    with pytest.raises(OperationFailure, match="changed or removed"):
        handle.update(job, {"state": hyperopt.JOB_STATE_DONE})


def test_server_restart_keeps_data_and_operations_wait_for_it(tmp_path):
    srv = MongoServer(tmp_path / "db", port=0, backend="secantus").start()
    port = srv.port
    try:
        handle = MongoJobs4.new_from_connection_str(with_database(srv.url, "scvi_db"))
        handle.insert({"tid": 0, "exp_key": "r", "state": 0})
        srv.stop()
        restarted = MongoServer(tmp_path / "db", port=port, backend="secantus")
        timer = threading.Timer(1.0, restarted.start)
        timer.start()
        # issued while the server is down: retried until it is back
        count = retrying(lambda: handle.jobs.count_documents({"exp_key": "r"}), "count", window_s=60)
        timer.join()
        assert count == 1
    finally:
        srv.stop()
        if "restarted" in locals():
            restarted.stop()


def test_server_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="`backend` must be one of"):
        MongoServer(tmp_path, backend="postgres")
    with pytest.raises(ValueError, match="`mongo_port` must be an integer"):
        MongoServer(tmp_path, port="http")
    with pytest.raises(ValueError, match=r"`mongo_port` must be in \[0, 65535\]"):
        MongoServer(tmp_path, port=70000)


def test_server_port_taken(server, tmp_path):
    with pytest.raises(RuntimeError, match="cannot start the embedded MongoDB server"):
        MongoServer(tmp_path / "other", port=server.port, backend="secantus").start()


def test_pickled_trials_drop_handle_and_keep_results(server, tmp_path):
    trials = _run_with_thread_workers(_url(server), "pkl", objectives.quadratic, max_evals=5, n_workers=1)
    loaded = pickle.loads(pickle.dumps(trials))
    assert not hasattr(loaded, "handle")
    assert loaded.best_trial["result"]["loss"] == trials.best_trial["result"]["loss"]
    assert len(loaded.trials) == 5


def test_adaptive_poll_resets_on_change_and_backs_off():
    poll = _AdaptivePoll(low=0.01, high=0.1, factor=2)
    assert poll.next("a") == 0.01
    assert [poll.next("a") for _ in range(4)] == [0.02, 0.04, 0.08, 0.1]
    assert poll.next("b") == 0.01


def test_worker_exits_after_reserve_timeout(server):
    worker = Worker(_url(server), "nothing", reserve_timeout=0.3)
    start = time.monotonic()
    assert worker.run() == 0
    assert 0.3 <= time.monotonic() - start < 10


def test_fmin_timer_returns_without_workers(server):
    trials = MongoTrials4(_url(server), exp_key="timer")
    start = time.monotonic()
    run_fmin(trials, objectives.quadratic, SPACE, max_evals=5, timeout=0.5, rstate=0)
    assert time.monotonic() - start < 10
    assert trials.count_by_state_unsynced(hyperopt.JOB_STATE_DONE) == 0


def test_fmin_timeout_raised_when_workers_are_gone():
    class Gone:
        def is_alive(self):
            return False

    class Stuck:
        stopped = False

        def stop(self):
            self.stopped = True

    stuck = Stuck()
    with pytest.raises(FminTimeoutError, match="had not finished 0.2 seconds after all workers exited"):
        _wait_for_result(queue.Queue(), stuck, Gone(), fmin_timeout=0.2)
    assert stuck.stopped


def test_resolve_worker_counts():
    assert resolve_worker_counts(None, [], 1) == (os.cpu_count(), [])
    assert resolve_worker_counts(None, [0, 1], 2) == (0, [0, 1])
    with pytest.raises(ValueError, match="`n_cpu_workers` must be a non-negative int"):
        resolve_worker_counts(-1, [], 1)
    with pytest.raises(ValueError, match="no worker to start"):
        resolve_worker_counts(0, [], 1)


def test_worker_command_line_requires_url_and_key(capsys):
    with pytest.raises(SystemExit) as excinfo:
        worker_main(["worker", "--mongo-url", "mongodb://127.0.0.1:1/db"])
    assert excinfo.value.code == 2
    assert "--exp-key" in capsys.readouterr().err


def test_worker_command_line_runs_jobs(server):
    url = _url(server)
    trials = MongoTrials4(url, exp_key="cli")
    thread = threading.Thread(
        target=lambda: run_fmin(trials, objectives.quadratic, SPACE, max_evals=4, rstate=1), daemon=True
    )
    thread.start()
    argv = ["worker", "--mongo-url", url, "--exp-key", "cli", "--max-jobs", "4", "--reserve-timeout", "30"]
    assert worker_main(argv) == 0
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(trials.trials) == 4 and {t["result"]["pid"] for t in trials.trials} == {os.getpid()}


# ---- the public function: argument checking and the sequential search -------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(exp_key=""), ValueError, "`exp_key` must be a non-empty string"),
        (dict(exp_key="e"), ValueError, "`gene_dataset` is required"),
        (
            dict(exp_key="e", custom_objective_hyperopt=objectives.quadratic, max_evals=0),
            ValueError,
            "`max_evals` must be a positive int",
        ),
        (dict(exp_key="e", custom_objective_hyperopt=3), TypeError, "`custom_objective_hyperopt` must be callable"),
        (dict(exp_key="e", gene_dataset=object(), space={"model_kwargs": {}}), ValueError, "`space` keys must be"),
        (
            dict(exp_key="e", custom_objective_hyperopt=objectives.quadratic, n_cpu_workers=0, gpu_ids=[]),
            ValueError,
            "no worker to start",
        ),
    ],
)
def test_auto_tune_argument_errors(autotune, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        autotune.auto_tune_scvi_model(save_path=str(tmp_path), **kwargs)


def test_sequential_custom_objective(autotune, tmp_path):
    best, trials = autotune.auto_tune_scvi_model(
        "seq", custom_objective_hyperopt=objectives.quadratic, objective_kwargs={"target": 0.7}, space=SPACE,
        max_evals=20, parallel=False, save_path=str(tmp_path),
    )
    assert len(trials.trials) == 20
    best_x = trials.best_trial["result"]["space"]["x"]
    assert abs(best_x - 0.7) < 0.1
    assert best == {"trained_on": {"x": best_x}}  # retrained with the best configuration
    with open(tmp_path / "trials_seq", "rb") as handle:
        assert pickle.load(handle).best_trial["tid"] == trials.best_trial["tid"]


def test_sequential_default_objective_trains_a_vae(autotune, tmp_path):
    from scvi.dataset._planted import planted_counts
    from scvi.dataset.dataset import GeneExpressionDataset
    from scvi.inference import UnsupervisedTrainer

    planted = planted_counts(n_cells=80, n_genes=20, n_clusters=2, n_de_genes=5, random_state=0)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(planted.X, batch_indices=planted.batch_indices, labels=planted.labels)
    space = {
        "model_tunable_kwargs": {"n_latent": hp.choice("n_latent", [2, 3])},
        "train_func_tunable_kwargs": {"lr": hp.choice("lr", [1e-2, 1e-3])},
    }
    best, trials = autotune.auto_tune_scvi_model(
        "vae", gene_dataset=dataset, space=space, max_evals=2, parallel=False, save_path=str(tmp_path),
        metric_name="elbo", model_specific_kwargs={"n_hidden": 16}, train_func_specific_kwargs={"n_epochs": 3},
    )
    assert isinstance(best, UnsupervisedTrainer)
    assert best.model.n_latent in (2, 3)
    results = [t["result"] for t in trials.trials]
    assert all(r["status"] == "ok" and np.isfinite(r["loss"]) for r in results)
    assert all(len(r["history"]["elbo_test_set"]) >= 3 for r in results)  # monitored every epoch
    assert (tmp_path / "best_model_vae").exists() and (tmp_path / "trials_vae").exists()
