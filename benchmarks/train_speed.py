"""Training throughput and peak memory of scVI's ``UnsupervisedTrainer``, ours against the original.

Workflow (identical for both packages): negative-binomial counts with 2 batches (dense 10,000 cells
x 2,000 genes by default, or ``--sparse``: CSR with ``--density`` non-zeros), ``VAE(n_hidden=128,
n_latent=10)``, ``UnsupervisedTrainer(train_size=0.9, batch_size=128, frequency=None)``, torch
threads 2, 1 warm-up epoch then 3 timed epochs. Prints JSON: seconds per epoch, training cells
per second and peak RSS.

``--vs-legacy PYTHON`` runs the same workflow with the original package in the interpreter
``PYTHON`` (e.g. a venv with scvi==0.6.8), interleaved A B A B A B on the same data file, and
prints both series, their medians and the ratios: of the medians, and of each A B pair (with
their median). On a shared virtual machine one process can run 30-40% slower than the next for
its whole life (measured here for both packages), so use five pairs or more.

Examples
--------
python benchmarks/train_speed.py
python benchmarks/train_speed.py --vs-legacy /path/to/legacy-venv/bin/python
python benchmarks/train_speed.py --sparse --n-cells 100000 --n-genes 1000 --density 0.08 --vs-legacy ...
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_counts(path: str, n_cells: int, n_genes: int, sparse: bool, density: float, seed: int = 0) -> None:
    """Write negative-binomial counts with 2 batches to ``path`` (.npz), in chunks of cells."""
    import numpy as np
    import scipy.sparse as sp_sparse

    rng = np.random.default_rng(seed)
    batch = rng.permutation(np.arange(n_cells) % 2).astype(np.int64)
    base = rng.gamma(1.0, 1.0, size=n_genes) + 0.05
    shift = np.exp(0.3 * rng.standard_normal((2, n_genes)))
    theta = 2.0
    chunks = []
    for start in range(0, n_cells, 10000):
        b = batch[start : start + 10000]
        mean = base[None, :] * shift[b]
        if sparse:
            # scale the means so that P(count > 0) is about `density`
            mean = mean * (-np.log1p(-density) / mean.mean()) * 1.4
        counts = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
        chunks.append(sp_sparse.csr_matrix(counts) if sparse else counts)
    if sparse:
        X = sp_sparse.vstack(chunks).tocsr()
        np.savez(path, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, batch=batch, sparse=True)
    else:
        np.savez(path, X=np.concatenate(chunks), batch=batch, sparse=False)


def load_counts(path: str):
    import numpy as np
    import scipy.sparse as sp_sparse

    f = np.load(path)
    if bool(f["sparse"]):
        X = sp_sparse.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
    else:
        X = f["X"]
    return X, f["batch"]


def run_worker(args) -> dict:
    """Train in this interpreter (whichever ``scvi`` it imports) and measure."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(args.threads)
    import logging

    from scvi.dataset import GeneExpressionDataset
    from scvi.inference import UnsupervisedTrainer
    from scvi.models import VAE

    logging.getLogger("scvi").setLevel(logging.WARNING)
    X, batch = load_counts(args.data)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, batch_indices=batch)
    torch.manual_seed(0)
    vae = VAE(dataset.nb_genes, n_batch=dataset.n_batches, n_hidden=128, n_latent=10)
    trainer = UnsupervisedTrainer(
        vae, dataset, train_size=0.9, batch_size=128, frequency=None, use_cuda=False, show_progbar=False
    )
    trainer.train(n_epochs=args.warmup)
    start = time.perf_counter()
    trainer.train(n_epochs=args.epochs)
    seconds = (time.perf_counter() - start) / args.epochs
    n_train = len(trainer.train_set.indices)
    import scvi

    return {
        "package": f"scvi {getattr(scvi, '__version__', '?')}",
        "seconds_per_epoch": round(seconds, 4),
        "cells_per_second": round(n_train / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "n_train_cells": n_train,
    }


def spawn(python: str, args, ours: bool) -> dict:
    """Run one measurement in a fresh interpreter."""
    env = dict(os.environ)
    if ours:
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    command = [python, str(Path(__file__).resolve()), "--worker", "--data", args.data]
    command += ["--threads", str(args.threads), "--epochs", str(args.epochs), "--warmup", str(args.warmup)]
    out = subprocess.run(command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(runs) -> dict:
    return {
        "seconds_per_epoch": statistics.median(r["seconds_per_epoch"] for r in runs),
        "cells_per_second": statistics.median(r["cells_per_second"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-cells", type=int, default=10000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--sparse", action="store_true", help="CSR counts")
    parser.add_argument("--density", type=float, default=0.08, help="fraction of non-zeros with --sparse")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="A B pairs with --vs-legacy")
    parser.add_argument("--vs-legacy", metavar="PYTHON", help="interpreter with the original scvi package")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    # a terminated run still removes its temporary data
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as tmp:
        args.data = os.path.join(tmp, "counts.npz")
        make_counts(args.data, args.n_cells, args.n_genes, args.sparse, args.density)
        workflow = {
            "n_cells": args.n_cells,
            "n_genes": args.n_genes,
            "sparse": args.sparse,
            "density": args.density if args.sparse else None,
            "threads": args.threads,
            "warmup_epochs": args.warmup,
            "timed_epochs": args.epochs,
        }
        if not args.vs_legacy:
            result = spawn(sys.executable, args, ours=True)
            print(json.dumps({"workflow": workflow, "ours": result}, indent=1))
            return
        ours, legacy = [], []
        for _ in range(args.repeats):  # interleaved: A B A B A B
            ours.append(spawn(sys.executable, args, ours=True))
            legacy.append(spawn(args.vs_legacy, args, ours=False))
        a, b = summary(ours), summary(legacy)
        # each pair ran back to back, so its ratio is less exposed to the machine's slow drifts
        pair_speedups = [round(o["cells_per_second"] / l["cells_per_second"], 2) for o, l in zip(ours, legacy)]
        print(
            json.dumps(
                {
                    "workflow": workflow,
                    "ours": {"runs": ours, "median": a},
                    "legacy": {"runs": legacy, "median": b},
                    "speedup_cells_per_second": round(a["cells_per_second"] / b["cells_per_second"], 2),
                    "pair_speedups": pair_speedups,
                    "median_pair_speedup": round(statistics.median(pair_speedups), 2),
                    "peak_rss_ratio": round(a["peak_rss_mb"] / b["peak_rss_mb"], 2),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
