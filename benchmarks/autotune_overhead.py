"""Overhead of the parallel autotune machinery: evaluations of a trivial objective, 2 workers.

Runs ``auto_tune_scvi_model(parallel=True)`` (embedded server, 2 CPU worker processes, the
driver) on an objective that returns at once, and prints JSON:

- ``total_seconds`` / ``seconds_per_trial``: the whole call (server and worker start-up included);
- ``search_seconds`` / ``search_seconds_per_trial``: from the first job claimed to the last
  result written (the machinery's cost per trial once workers run).

hyperopt's own polling costs about 1 s per trial; the target is under 0.2 s. ``--poll 1.0``
reproduces hyperopt's fixed one-second polling for comparison. Timings are noisy on a shared
machine.

Usage::

    python benchmarks/autotune_overhead.py [--n-evals 50] [--workers 2] [--poll SECONDS]
"""
import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trivial(space, is_best_training=False):
    """Returns at once."""
    return {"loss": (space["x"] - 0.5) ** 2, "status": "ok", "space": space}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-evals", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--poll", type=float, default=None, help="fixed poll interval (1.0 = hyperopt's)")
    args = parser.parse_args(argv)

    from hyperopt import hp

    import functools

    from scvi.inference import autotune
    from scvi.inference.autotune import auto_tune_scvi_model

    if args.poll is not None:  # the same machinery with a fixed interval, driver and workers
        autotune.search_parallel = functools.partial(autotune.search_parallel, poll_interval=args.poll)
    logging.getLogger("scvi.inference.autotune").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as save_path:
        start = time.perf_counter()
        _, trials = auto_tune_scvi_model(
            "overhead", custom_objective_hyperopt=trivial, space={"x": hp.uniform("x", 0, 1)}, max_evals=args.n_evals,
            save_path=save_path, n_cpu_workers=args.workers, gpu_ids=[], mongo_port=0, pickle_result=False,
            reserve_timeout=120.0, fmin_timeout=120.0,
        )
        total = time.perf_counter() - start
    docs = trials.trials
    first = min(d["book_time"] for d in docs)
    last = max(d["refresh_time"] for d in docs)
    search = (last - first).total_seconds()
    owners = {d["owner"][0] for d in docs}
    report = {
        "n_evals": len(docs),
        "n_workers": args.workers,
        "workers_used": len(owners),
        "poll": args.poll if args.poll is not None else "adaptive",
        "total_seconds": round(total, 3),
        "seconds_per_trial": round(total / len(docs), 4),
        "search_seconds": round(search, 3),
        "search_seconds_per_trial": round(search / len(docs), 4),
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return report


if __name__ == "__main__":
    main()
