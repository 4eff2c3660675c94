"""The main job: the introduction tutorial (scVI 0.6 documentation, §2.1) end to end on a real dataset.

Run ``python notebooks/main_job.py`` (``--help`` for the options). It

1. loads PBMC 3k (2,700 human blood cells, 10x Genomics) from the shared data folder, or — when the
   data cannot be found — planted synthetic counts, saying so clearly;
2. filters genes and cells and keeps the 1,000 most variable genes (Seurat v3 selection);
3. trains scVI's ``VAE`` with ``UnsupervisedTrainer`` (90 % train / 10 % held out) with a progress bar;
4. prints the held-out ELBO and marginal log-likelihood;
5. writes the latent space (UMAP when umap-learn is installed, else t-SNE) coloured by cluster and
   batch as a PNG, the one-vs-all differential expression table as a CSV, and the posterior saved
   with ``save_posterior``, which it reloads with ``load_posterior`` and checks.

Everything goes into ``./main_job_output`` (or ``--out``). ``--quick`` is a small run for the tests.
"""
import argparse
import logging
import sys
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _notebook_utils
if str(HERE.parent) not in sys.path:  # the package itself when it is not installed
    sys.path.append(str(HERE.parent))

logger = logging.getLogger("scvi.main_job")


class JobConfig(NamedTuple):
    """Sizes of one run."""

    n_epochs: int
    n_genes: int
    n_cells: Optional[int]
    n_mc_samples: int
    de_samples: int
    n_clusters: int


FULL = JobConfig(n_epochs=150, n_genes=1000, n_cells=None, n_mc_samples=100, de_samples=2000, n_clusters=8)
QUICK = JobConfig(n_epochs=3, n_genes=200, n_cells=400, n_mc_samples=5, de_samples=100, n_clusters=4)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="main_job_output", help="output folder (default: ./main_job_output)")
    parser.add_argument("--quick", action="store_true", help="tiny run (a few epochs on 400 cells) for the tests")
    parser.add_argument("--n-epochs", type=int, default=None, help="training epochs (default 150; 3 with --quick)")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic fallback data on purpose")
    parser.add_argument("--embedding", choices=("auto", "umap", "tsne"), default=None,
                        help="2-D embedding: UMAP when umap-learn is installed (auto, the default), else t-SNE; "
                        "--quick uses t-SNE")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.n_epochs is not None and args.n_epochs < 1:
        parser.error(f"--n-epochs must be a positive integer; got {args.n_epochs}")
    if args.threads < 1:
        parser.error(f"--threads must be a positive integer; got {args.threads}")
    return args


def load_data(config: JobConfig, synthetic: bool, seed: int) -> Tuple[object, str]:
    """PBMC 3k filtered to ``config.n_genes`` variable genes, or the synthetic fallback."""
    import _notebook_utils as nu

    if not synthetic:
        try:
            dataset = nu.real_dataset("pbmc3k", n_cells=config.n_cells, random_state=seed)
            source = f"PBMC 3k (10x Genomics, real data from {nu.shared_data_dir() / 'real'})"
        except (FileNotFoundError, OSError) as error:
            print(f"!! Real data not reachable ({error}).")
            print("!! FALLING BACK TO SYNTHETIC DATA: the numbers below say nothing about real cells.")
            synthetic = True
    if synthetic:
        dataset, source = synthetic_dataset(config, seed), "SYNTHETIC planted counts (fallback, not real data)"
    # Genes seen in at least 3 cells, cells with at least 200 UMIs, then the most variable genes.
    dataset.filter_genes_by_count(3)
    dataset.filter_cells_by_count(200)
    dataset.subsample_genes(min(config.n_genes, dataset.nb_genes))
    return dataset, source


def synthetic_dataset(config: JobConfig, seed: int):
    """Negative-binomial counts with planted clusters and two batches (``scvi.dataset._planted``)."""
    from scvi.dataset import GeneExpressionDataset
    from scvi.dataset._planted import planted_counts

    n_cells = config.n_cells or 2000
    planted = planted_counts(n_cells=n_cells, n_genes=max(config.n_genes, 200), n_clusters=5, n_batches=2,
                             random_state=seed)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        planted.X,
        batch_indices=planted.batch_indices,
        labels=planted.labels,
        gene_names=planted.gene_names,
        cell_types=planted.cell_types,
    )
    return dataset


def cluster_latent(latent: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """K-means clusters of the latent space (PBMC 3k has no curated labels)."""
    from sklearn.cluster import KMeans

    n_clusters = min(n_clusters, len(latent))
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(latent)


def embed_2d(latent: np.ndarray, seed: int, method: str = "auto") -> Tuple[np.ndarray, str]:
    """UMAP of the latent space when umap-learn is installed (``method="auto"``), else t-SNE."""
    try:
        if method == "tsne":
            raise ImportError("t-SNE requested")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from umap import UMAP

            return UMAP(n_neighbors=15, min_dist=0.3, random_state=seed).fit_transform(latent), "UMAP"
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(5.0, (len(latent) - 1) / 3.0))
        return TSNE(n_components=2, perplexity=perplexity, random_state=seed).fit_transform(latent), "t-SNE"


def plot_latent(embedding: np.ndarray, method: str, clusters: np.ndarray, batches: np.ndarray, path: Path) -> None:
    """Two panels: the 2-D embedding coloured by cluster and by batch, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scvi._utils import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, values, title in ((axes[0], clusters, "cluster"), (axes[1], batches, "batch")):
        for value in np.unique(values):
            mask = values == value
            ax.scatter(embedding[mask, 0], embedding[mask, 1], s=4, label=str(value))
        ax.set_title(f"scVI latent space ({method}) coloured by {title}")
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
        ax.legend(markerscale=4, fontsize="small", title=title, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_de_table(de_res, de_clusters, path: Path):
    """Concatenate the per-cluster one-vs-all tables (top genes first) into one CSV."""
    import pandas as pd

    from scvi._utils import atomic_path

    tables = []
    for table, cluster in zip(de_res, de_clusters):
        table = table.copy()
        table["clusters"] = cluster
        tables.append(table)
    table = pd.concat(tables)
    table.index.name = "gene"
    with atomic_path(path) as tmp:
        table.to_csv(tmp)
    return table


def run(args: argparse.Namespace) -> dict:
    """Run the job; returns the printed figures (for the tests)."""
    import torch

    import scvi
    from scvi.inference import UnsupervisedTrainer, load_posterior
    from scvi.models import VAE

    start = time.time()
    config = QUICK if args.quick else FULL
    if args.n_epochs is not None:
        config = config._replace(n_epochs=args.n_epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scvi.set_seed(args.seed)
    # One intra-op thread: on a small shared machine extra threads contend and slow training down.
    torch.set_num_threads(args.threads)

    print(f"== 1. Loading data ({'quick run' if args.quick else 'full run'})")
    dataset, source = load_data(config, args.synthetic, args.seed)
    print(f"   source: {source}")
    print(f"   after filtering: {len(dataset)} cells x {dataset.nb_genes} genes, {dataset.n_batches} batch(es)")

    print(f"== 2. Training scVI (VAE, {config.n_epochs} epochs, 90% train / 10% held out)")
    vae = VAE(dataset.nb_genes, n_batch=dataset.n_batches if dataset.n_batches > 1 else 0)
    # KL warm-up over the first half of training (the legacy default, 400 epochs, outlasts this run).
    trainer = UnsupervisedTrainer(vae, dataset, train_size=0.9, use_cuda=False, frequency=5,
                                  n_epochs_kl_warmup=max(1, config.n_epochs // 2))
    trainer.train(n_epochs=config.n_epochs, lr=1e-3)

    print("== 3. Held-out evaluation")
    elbo = trainer.test_set.elbo()
    marginal_ll = trainer.test_set.marginal_ll(n_mc_samples=config.n_mc_samples)
    print(f"   held-out ELBO (negative, per cell): {elbo:.2f}")
    print(f"   held-out marginal log-likelihood (negative, per cell, {config.n_mc_samples} MC samples): "
          f"{marginal_ll:.2f}")

    print("== 4. Latent space")
    full = trainer.create_posterior(trainer.model, dataset, indices=np.arange(len(dataset)))
    latent, batch_indices, labels = full.sequential().get_latent()
    batch_indices = batch_indices.ravel()
    has_labels = len(np.unique(labels)) > 1
    clusters = labels.ravel() if has_labels else cluster_latent(latent, config.n_clusters, args.seed)
    embedding, method = embed_2d(latent, args.seed, args.embedding or ("tsne" if args.quick else "auto"))
    png = out / "latent_space.png"
    plot_latent(embedding, method, clusters, batch_indices, png)
    print(f"   {method} of the {latent.shape[1]}-d latent space coloured by cluster and batch: {png}")

    print("== 5. One-vs-all differential expression")
    de_res, de_clusters = full.one_vs_all_degenes(cell_labels=clusters, n_samples=config.de_samples,
                                                  M_permutation=config.de_samples, min_cells=5)
    csv = out / "de_one_vs_all.csv"
    table = write_de_table(de_res, de_clusters, csv)
    for res, cluster in zip(de_res, de_clusters):
        top = ", ".join(res.index[:5])
        print(f"   cluster {cluster} ({int((clusters == cluster).sum())} cells): top genes {top}")
    print(f"   {len(table)} rows written to {csv}")

    print("== 6. Saving and reloading the posterior")
    save_dir = out / "full_posterior"
    if save_dir.exists():
        import shutil

        shutil.rmtree(save_dir)
    full.save_posterior(str(save_dir))
    retrieved = load_posterior(dir_path=str(save_dir), model=VAE(dataset.nb_genes, n_batch=vae.n_batch),
                               use_cuda=False)
    latent_again, _, _ = retrieved.sequential().get_latent()
    same = bool(np.allclose(latent, latent_again, atol=1e-5))
    print(f"   posterior saved to {save_dir}; reloaded latent space identical: {same}")
    elapsed = time.time() - start
    print(f"== Done in {elapsed:.0f} s")
    return {
        "elbo": elbo,
        "marginal_ll": marginal_ll,
        "png": png,
        "csv": csv,
        "posterior": save_dir,
        "reload_identical": same,
        "source": source,
        "seconds": elapsed,
    }


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    result = run(args)
    return 0 if result["reload_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
