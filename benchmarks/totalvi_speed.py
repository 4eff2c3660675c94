"""Seconds per totalVI training epoch, against the original scVI 0.6 with ``--vs-legacy PYTHON``.

Workflow (the §2.3 totalVI tutorial's settings): 5,000 cells x 1,000 genes + 20 proteins of
synthetic CITE-seq counts with 2 batches, ``TOTALVI(n_genes, n_proteins, n_batch=2)`` with its
defaults, ``TotalTrainer(train_size=0.9, test_size=0.1, frequency=None, early_stopping_kwargs=None,
data_loader_kwargs={"batch_size": 256})``, ``lr=4e-3``, torch threads 2, warm-up epochs then
timed epochs. Each measurement runs in a fresh interpreter; with ``--vs-legacy`` the original
package runs the same workflow in its own interpreter, interleaved (A B A B ...).

Usage::

    python benchmarks/totalvi_speed.py
    python benchmarks/totalvi_speed.py --vs-legacy /work/legacy-venv/bin/python

Prints one JSON object per run and a JSON summary (median wall-clock and CPU seconds per epoch,
training cells per second, peak RSS, and the throughput ratios legacy time / our time). Timings on a
shared machine are noisy; CPU seconds are less sensitive to other processes than wall-clock seconds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_data(path: str, n_cells: int, n_genes: int, n_proteins: int, seed: int = 0) -> None:
    """Synthetic CITE-seq counts: NB genes in 5 clusters, NB background/foreground proteins, 2 batches."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n_cells)
    batches = rng.integers(0, 2, n_cells)
    log_scale = rng.normal(0, 1, (5, n_genes)) * (rng.random((5, n_genes)) < 0.2) + rng.normal(-1, 1, n_genes)
    mean = np.exp(log_scale[labels]) * rng.lognormal(0.5, 0.3, (n_cells, 1))
    X = rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(np.float32)
    background = np.exp(rng.normal(np.log(20), 0.4, (2, n_proteins)))
    positive = rng.random((5, n_proteins)) < 0.4
    protein_mean = background[batches] * np.where(positive[labels], rng.uniform(5, 20, n_proteins), 1.0)
    Y = rng.poisson(rng.gamma(5.0, protein_mean / 5.0)).astype(np.float32)
    np.savez(path, X=X, Y=Y, labels=labels, batches=batches)


def worker(path: str, epochs: int, warmup: int, threads: int, batch_size: int) -> dict:
    """Train in this interpreter (ours or the original package, whichever ``import scvi`` finds)."""
    import resource
    import warnings

    import numpy as np
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    import scvi
    from scvi.dataset import GeneExpressionDataset
    from scvi.dataset.dataset import CellMeasurement
    from scvi.inference import TotalTrainer
    from scvi.models import TOTALVI

    scvi.set_verbosity("WARNING")
    data = np.load(path)
    dataset = GeneExpressionDataset()
    proteins = CellMeasurement(
        name="protein_expression",
        data=data["Y"],
        columns_attr_name="protein_names",
        columns=np.array([f"protein_{i}" for i in range(data["Y"].shape[1])]),
    )
    dataset.populate_from_data(
        data["X"], batch_indices=data["batches"], labels=data["labels"], Ys=[proteins]
    )
    torch.manual_seed(0)
    model = TOTALVI(dataset.nb_genes, len(dataset.protein_names), n_batch=dataset.n_batches)
    trainer = TotalTrainer(
        model,
        dataset,
        train_size=0.9,
        test_size=0.1,
        frequency=None,
        early_stopping_kwargs=None,
        data_loader_kwargs={"batch_size": batch_size},
        show_progbar=False,
    )
    if warmup:
        trainer.train(n_epochs=warmup, lr=4e-3)
    begin, begin_cpu = time.perf_counter(), time.process_time()
    trainer.train(n_epochs=epochs, lr=4e-3)
    seconds = (time.perf_counter() - begin) / epochs
    cpu_seconds = (time.process_time() - begin_cpu) / epochs
    n_train = len(trainer.train_set.indices)
    return {
        "package": "scvi " + getattr(scvi, "__version__", "?") + " @ " + os.path.dirname(scvi.__file__),
        "seconds_per_epoch": round(seconds, 4),
        "cpu_seconds_per_epoch": round(cpu_seconds, 4),
        "train_cells_per_second": round(n_train / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run(python: str, ours: bool, args, data_path: str) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if ours:
        env["PYTHONPATH"] = REPO_ROOT
    command = [
        python,
        os.path.abspath(__file__),
        "--worker",
        data_path,
        "--epochs",
        str(args.epochs),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--batch-size",
        str(args.batch_size),
    ]
    # run outside the repository so that the original package is not shadowed by ours
    result = subprocess.run(command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker failed ({python}):\n{result.stderr[-3000:]}")
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record["which"] = "ours" if ours else "legacy"
    print(json.dumps(record), flush=True)
    return record


def summarize(records) -> dict:
    seconds = statistics.median(r["seconds_per_epoch"] for r in records)
    return {
        "median_seconds_per_epoch": round(seconds, 4),
        "median_cpu_seconds_per_epoch": round(statistics.median(r["cpu_seconds_per_epoch"] for r in records), 4),
        "median_train_cells_per_second": round(statistics.median(r["train_cells_per_second"] for r in records), 1),
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in records),
        "runs": len(records),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-legacy", metavar="PYTHON", help="interpreter with the original scvi 0.6 installed")
    parser.add_argument("--n-cells", type=int, default=5000)
    parser.add_argument("--n-genes", type=int, default=1000)
    parser.add_argument("--n-proteins", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per package (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--worker", metavar="NPZ", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.warmup, args.threads, args.batch_size)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "citeseq.npz")
        make_data(data_path, args.n_cells, args.n_genes, args.n_proteins)
        ours, legacy = [], []
        for _ in range(args.repeats):
            ours.append(run(sys.executable, True, args, data_path))
            if args.vs_legacy:
                legacy.append(run(args.vs_legacy, False, args, data_path))
    summary = {
        "workflow": f"totalVI {args.n_cells} cells x {args.n_genes} genes + {args.n_proteins} proteins, "
        f"batch_size {args.batch_size}, {args.epochs} timed epochs after {args.warmup} warm-up, "
        f"{args.threads} torch threads",
        "ours": summarize(ours),
    }
    if legacy:
        summary["legacy"] = summarize(legacy)
        for key in ("seconds", "cpu_seconds"):
            summary[f"throughput_ratio_ours_vs_legacy_{key}"] = round(
                summary["legacy"][f"median_{key}_per_epoch"] / summary["ours"][f"median_{key}_per_epoch"], 2
            )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
