"""Cell-type annotation with SCANVI against scikit-learn baselines (and the original package).

Workflow: ``kidney_immune_raw.h5ad`` (1,000 cells x 19,969 genes, 12 cell types, all genes kept);
10% of the cells of each type (at least one) are labelled, drawn with ``--seed``; the rest are
predicted. SCANVI with its defaults (``SCANVI(n_genes, n_labels=12)``) is trained by
``SemiSupervisedTrainer`` (defaults, ``frequency=None``) for ``--epochs`` epochs, with the labelled
and unlabelled sets given explicitly (``trainer.labelled_set = trainer.create_posterior(indices=...)``),
torch threads ``--threads``. Reported: accuracy on the unlabelled cells and the seconds spent in
``trainer.train``. Baselines on the same split: ``compute_accuracy_svc`` and ``compute_accuracy_rf``.

``--repeats N`` repeats everything on N splits (seeds ``--seed`` ... ``--seed + N - 1``) and reports
the means: accuracies on 899 cells move by a few points from one split to the next.

Baselines are computed on the raw counts (what 0.6's ``svc_rf`` fed them) and on log-normalised
counts.

``--vs-legacy PYTHON`` runs the same SCANVI workflow with the original package in the
interpreter ``PYTHON`` (e.g. ``/work/legacy-venv/bin/python``) at the same time as ours, so that
both see the same machine load. Wall-clock timings on a shared machine are noisy; the process
CPU time (one torch thread by default) is the steadier comparison.

Usage::

    python benchmarks/annotation.py
    python benchmarks/annotation.py --vs-legacy /work/legacy-venv/bin/python --repeats 1
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(REPO_ROOT, "..", "shared", "data", "real", "kidney_immune_raw.h5ad")


def make_split(h5ad: str, out: str, fraction: float, seed: int) -> dict:
    """Write counts, integer labels and the labelled / unlabelled indices to ``out`` (.npz)."""
    import anndata
    import numpy as np
    import scipy.sparse as sp_sparse

    adata = anndata.read_h5ad(h5ad)
    X = sp_sparse.csr_matrix(adata.X, dtype=np.float32)
    cell_types, labels = np.unique(adata.obs["celltype"].astype(str).to_numpy(), return_inverse=True)
    rng = np.random.default_rng(seed)
    labelled = []
    for label in range(len(cell_types)):
        members = np.flatnonzero(labels == label)
        n = max(1, int(round(fraction * len(members))))
        labelled.append(rng.choice(members, size=n, replace=False))
    labelled = np.sort(np.concatenate(labelled))
    unlabelled = np.setdiff1d(np.arange(len(labels)), labelled)
    np.savez(
        out, data=X.data, indices=X.indices, indptr=X.indptr, shape=X.shape, labels=labels,
        labelled=labelled, unlabelled=unlabelled,
    )
    return {"n_cells": int(X.shape[0]), "n_genes": int(X.shape[1]), "n_types": len(cell_types),
            "n_labelled": len(labelled), "n_unlabelled": len(unlabelled)}


def load_split(path: str):
    import numpy as np
    import scipy.sparse as sp_sparse

    f = np.load(path)
    X = sp_sparse.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
    return X, f["labels"], f["labelled"], f["unlabelled"]


def worker(path: str, epochs: int, threads: int, seed: int) -> dict:
    """Train SCANVI in this interpreter (ours or the original, whichever ``import scvi`` finds)."""
    import logging
    import warnings

    import numpy as np
    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    logging.getLogger("scvi").setLevel(logging.WARNING)
    from scvi.dataset import GeneExpressionDataset
    from scvi.inference import SemiSupervisedTrainer
    from scvi.models import SCANVI

    X, labels, labelled, unlabelled = load_split(path)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(X, labels=labels)
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = SCANVI(dataset.nb_genes, n_batch=0, n_labels=dataset.n_labels)
    trainer = SemiSupervisedTrainer(model, dataset, frequency=None, use_cuda=False, show_progbar=False)
    trainer.labelled_set = trainer.create_posterior(indices=labelled)
    trainer.unlabelled_set = trainer.create_posterior(indices=unlabelled)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.train(n_epochs=epochs)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    y, y_pred = trainer.unlabelled_set.compute_predictions()
    import scvi

    return {
        "package": f"scvi {getattr(scvi, '__version__', '?')} ({os.path.dirname(scvi.__file__)})",
        "accuracy_unlabelled": round(float(np.mean(y == y_pred)), 4),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
    }


def baselines(path: str) -> dict:
    """SVC and random-forest accuracies on the unlabelled cells, on two inputs.

    ``raw``: the counts, as 0.6's trainers feed them (``svc_rf`` on ``raw_data()``);
    ``lognorm``: ``log1p`` of the counts normalised to 10,000 per cell (a stronger baseline).
    """
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")
    sys.path.insert(0, REPO_ROOT)
    from scvi.inference.annotation import compute_accuracy_rf, compute_accuracy_svc

    X, labels, labelled, unlabelled = load_split(path)
    lognorm = X.multiply(1e4 / np.maximum(X.sum(axis=1), 1)).tocsr()
    lognorm.data = np.log1p(lognorm.data)
    out = {}
    for input_name, data in (("raw", X.toarray()), ("lognorm", lognorm.toarray())):
        for name, func in (("svc", compute_accuracy_svc), ("rf", compute_accuracy_rf)):
            start = time.perf_counter()
            (_, test), _ = func(data[labelled], labels[labelled], data[unlabelled], labels[unlabelled])
            out[f"{name}_{input_name}"] = {
                "accuracy_unlabelled": round(test.unweighted, 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
    return out


def spawn(python: str, args, ours: bool) -> subprocess.Popen:
    """Start one SCANVI run in a fresh interpreter (collect it with :func:`collect`)."""
    env = dict(os.environ)
    if ours:
        env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    command = [python, os.path.abspath(__file__), "--worker", "--split", args.split]
    command += ["--epochs", str(args.epochs), "--threads", str(args.threads), "--seed", str(args.seed)]
    return subprocess.Popen(
        command, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def collect(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{process.args[0]} failed:\n{stderr[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the kidney immune .h5ad")
    parser.add_argument("--fraction", type=float, default=0.1, help="labelled fraction of each cell type")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="splits to run, with seeds --seed, --seed + 1, ... (means reported)"
    )
    parser.add_argument("--no-baselines", action="store_true", help="skip SVC / RF")
    parser.add_argument("--vs-legacy", metavar="PYTHON", help="interpreter with the original scvi package")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.split, args.epochs, args.threads, args.seed)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        first_seed = args.seed
        for repeat in range(args.repeats):  # one split (and torch seed) per repeat
            args.seed = first_seed + repeat
            args.split = os.path.join(tmp, f"split{args.seed}.npz")
            workflow = make_split(args.data, args.split, args.fraction, args.seed)
            workflow.update({"epochs": args.epochs, "threads": args.threads, "seed": args.seed})
            # ours and the original side by side: both see the same machine load
            processes = [spawn(sys.executable, args, ours=True)]
            if args.vs_legacy:
                processes.append(spawn(args.vs_legacy, args, ours=False))
            results = [collect(p) for p in processes]
            run = {"workflow": workflow, "scanvi_ours": results[0]}
            if args.vs_legacy:
                run["scanvi_legacy"] = results[1]
            if not args.no_baselines:
                run["baselines"] = baselines(args.split)
            print(json.dumps(run), flush=True)
            runs.append(run)
        print(json.dumps({"runs": runs}, indent=1))
        print_table(runs)


def print_table(runs) -> None:
    """Accuracy on the unlabelled cells and training seconds, averaged over the repeats (seeds)."""

    def mean(values):
        values = list(values)
        return sum(values) / len(values)

    print(f"\n{len(runs)} split(s), seeds {[r['workflow']['seed'] for r in runs]}")
    print(f"{'method':<26}{'accuracy':>10}{'per seed':>26}{'train s':>10}{'train cpu s':>13}")
    rows = [("SCANVI (ours)", "scanvi_ours"), ("SCANVI (scvi 0.6.8)", "scanvi_legacy")]
    for name, key in rows:
        if key not in runs[0]:
            continue
        accuracies = [r[key]["accuracy_unlabelled"] for r in runs]
        per_seed = " ".join(f"{a:.3f}" for a in accuracies)
        seconds = mean(r[key]["train_seconds"] for r in runs)
        cpu = mean(r[key]["train_cpu_seconds"] for r in runs)
        print(f"{name:<26}{mean(accuracies):>10.3f}{per_seed:>26}{seconds:>10.1f}{cpu:>13.1f}")
    for baseline in runs[0].get("baselines", {}):
        accuracies = [r["baselines"][baseline]["accuracy_unlabelled"] for r in runs]
        per_seed = " ".join(f"{a:.3f}" for a in accuracies)
        name = baseline.replace("_", " (") + ") sklearn"
        print(f"{name:<26}{mean(accuracies):>10.3f}{per_seed:>26}{'-':>10}{'-':>13}")
    if "scanvi_legacy" in runs[0]:
        for key, what in (("train_seconds", "wall"), ("train_cpu_seconds", "CPU")):
            ratio = mean(r["scanvi_legacy"][key] for r in runs) / mean(r["scanvi_ours"][key] for r in runs)
            print(f"training speed-up ours vs legacy ({what} time): {ratio:.2f}x")


if __name__ == "__main__":
    main()
