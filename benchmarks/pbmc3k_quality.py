"""Held-out ELBO and marginal log-likelihood on PBMC3k: ours against the original scVI 0.6.

Both packages train ``VAE(n_genes)`` on the same 1,200 genes (``seurat_v3`` selection on the raw
counts of ``shared/data/real/pbmc3k_raw.h5ad``), with the same split (``train_size=0.9``,
``seed=0``), batch size, epochs, learning rate and KL warm-up, then report the test set's
negative ELBO and negative marginal log-likelihood per cell (lower is better). Runs are
interleaved A B A B ... over seeds and printed as JSON.

Examples
--------
python benchmarks/pbmc3k_quality.py --vs-legacy /path/to/legacy-venv/bin/python
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "real" / "pbmc3k_raw.h5ad"


def prepare(h5ad: str, n_genes: int, out: str) -> dict:
    """Select the top ``n_genes`` genes (seurat_v3, our implementation) and save dense counts."""
    import anndata
    import numpy as np
    import scipy.sparse as sp_sparse

    sys.path.insert(0, str(REPO_ROOT))
    from scvi.dataset._gene_selection import highly_variable_genes_indices

    adata = anndata.read_h5ad(h5ad)
    X = adata.X.tocsr() if sp_sparse.issparse(adata.X) else sp_sparse.csr_matrix(adata.X)
    keep_cells = np.asarray(X.sum(axis=1)).ravel() > 0
    X = X[keep_cells]
    genes = np.sort(highly_variable_genes_indices(X, n_genes, mode="seurat_v3"))
    X = X[:, genes].toarray().astype(np.float32)
    keep = X.sum(axis=1) > 0
    np.savez(out, X=X[keep])
    return {"n_cells": int(keep.sum()), "n_genes": int(X.shape[1])}


def run_worker(args) -> dict:
    """Train and evaluate in this interpreter (whichever ``scvi`` it imports)."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from scvi.dataset import GeneExpressionDataset
    from scvi.inference import UnsupervisedTrainer
    from scvi.models import VAE

    logging.getLogger("scvi").setLevel(logging.WARNING)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(np.load(args.data)["X"])
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    vae = VAE(dataset.nb_genes)
    trainer = UnsupervisedTrainer(
        vae,
        dataset,
        train_size=0.9,
        batch_size=128,
        frequency=None,
        use_cuda=False,
        show_progbar=False,
        n_epochs_kl_warmup=args.kl_warmup,
        seed=0,
    )
    trainer.train(n_epochs=args.epochs, lr=args.lr)
    torch.manual_seed(1234)
    elbo = float(trainer.test_set.elbo())
    marginal_ll = float(trainer.test_set.marginal_ll(n_mc_samples=args.n_mc_samples))
    import scvi

    return {
        "package": f"scvi {getattr(scvi, '__version__', '?')}",
        "seed": args.seed,
        "test_elbo": round(elbo, 3),
        "test_marginal_ll": round(marginal_ll, 3),
        "n_test_cells": int(len(trainer.test_set.indices)),
    }


def spawn(python: str, args, seed: int, ours: bool) -> dict:
    env = dict(os.environ)
    if ours:
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    command = [python, str(Path(__file__).resolve()), "--worker", "--data", args.data, "--seed", str(seed)]
    for flag in ("epochs", "lr", "kl_warmup", "n_mc_samples", "threads"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    out = subprocess.run(command, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--h5ad", default=str(DEFAULT_DATA))
    parser.add_argument("--n-genes", type=int, default=1200)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-warmup", type=int, default=50, help="n_epochs_kl_warmup")
    parser.add_argument("--n-mc-samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, help="runs per package (interleaved)")
    parser.add_argument("--vs-legacy", metavar="PYTHON", help="interpreter with the original scvi package")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    # a terminated run still removes its temporary data
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    with tempfile.TemporaryDirectory() as tmp:
        args.data = os.path.join(tmp, "pbmc3k.npz")
        shape = prepare(args.h5ad, args.n_genes, args.data)
        setup = {**shape, "epochs": args.epochs, "lr": args.lr, "batch_size": 128, "train_size": 0.9,
                 "n_epochs_kl_warmup": args.kl_warmup, "n_mc_samples": args.n_mc_samples}
        results = {"setup": setup, "ours": []}
        if args.vs_legacy:
            results["legacy"] = []
        for seed in range(args.seeds):
            results["ours"].append(spawn(sys.executable, args, seed, ours=True))
            if args.vs_legacy:
                results["legacy"].append(spawn(args.vs_legacy, args, seed, ours=False))
        for name in ("ours", "legacy"):
            if name in results:
                runs = results[name]
                results[f"{name}_median"] = {
                    key: statistics.median(r[key] for r in runs) for key in ("test_elbo", "test_marginal_ll")
                }
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
