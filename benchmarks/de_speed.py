"""Speed and peak memory of ``one_vs_all_degenes`` (vanilla and change mode).

Planted counts (5,000 cells x 2,000 genes, 10 clusters by default) are drawn once and saved to a
temporary file; each measurement runs in a fresh interpreter that builds the dataset, a default
``VAE`` and a posterior over all cells, then times ``one_vs_all_degenes(n_samples=5000)``. With
``--vs-legacy PYTHON`` the original package (scVI 0.6.8, installed for ``PYTHON``) runs the same
workflow, interleaved with ours. Prints JSON: seconds, peak RSS and ratios (legacy / ours).

    python benchmarks/de_speed.py --vs-legacy /work/legacy-venv/bin/python

``peak_rss_mb`` is the peak resident memory during the DE call (the Linux peak counter is reset
just before it; elsewhere it is the peak of the whole process), ``de_rss_increase_mb`` its
increase over the memory held before the call. Timings on a shared machine are noisy: use
``--repeats``, read the medians, and use ``--threads 1`` when other jobs compete for the cores.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(role: str, data_path: str, mode: str, n_samples: int, threads: int, seed: int) -> dict:
    """Build the workflow in this interpreter and time one_vs_all_degenes."""
    import numpy as np

    if role == "ours":
        sys.path.insert(0, str(REPO))
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    from scvi.dataset import GeneExpressionDataset
    from scvi.inference import UnsupervisedTrainer
    from scvi.models import VAE

    data = np.load(data_path, allow_pickle=False)
    dataset = GeneExpressionDataset()
    dataset.populate_from_data(
        data["X"],
        batch_indices=data["batch_indices"],
        labels=data["labels"],
        gene_names=data["gene_names"],
        cell_types=data["cell_types"],
    )
    torch.manual_seed(seed)
    np.random.seed(seed)
    vae = VAE(dataset.nb_genes, dataset.n_batches)
    trainer = UnsupervisedTrainer(vae, dataset, train_size=1.0, use_cuda=False)
    posterior = trainer.create_posterior(vae, dataset, indices=np.arange(len(dataset)))
    vae.eval()
    setup_peak = _peak_rss_mb()
    rss_before = _reset_peak_rss()
    start = time.perf_counter()
    tables, clusters = posterior.one_vs_all_degenes(n_samples=n_samples, mode=mode)
    seconds = time.perf_counter() - start
    return dict(
        seconds=seconds,
        peak_rss_mb=_peak_rss_mb(),
        rss_before_de_mb=rss_before,
        setup_peak_rss_mb=setup_peak,
        n_tables=len(tables),
        package=str(Path(sys.modules["scvi"].__file__).parent),
    )


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0
    raise KeyError(field)


def _reset_peak_rss() -> float:
    """Reset the peak-RSS counter (Linux ``clear_refs``) so that it measures the DE call alone;
    returns the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return _status_mb("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_rss_mb() -> float:
    """Peak RSS since the last reset (``VmHWM``), or of the whole process where unavailable."""
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run(python: str, role: str, args, data_path: str, mode: str) -> dict:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--child",
        role,
        "--data",
        data_path,
        "--mode",
        mode,
        "--n-samples",
        str(args.n_samples),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise RuntimeError(f"{role} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(runs: list) -> dict:
    seconds = [r["seconds"] for r in runs]
    return dict(
        seconds=[round(s, 3) for s in seconds],
        median_seconds=round(statistics.median(seconds), 3),
        peak_rss_mb=round(max(r["peak_rss_mb"] for r in runs), 1),
        de_rss_increase_mb=round(max(r["peak_rss_mb"] - r["rss_before_de_mb"] for r in runs), 1),
        setup_peak_rss_mb=round(max(r["setup_peak_rss_mb"] for r in runs), 1),
        n_tables=runs[0]["n_tables"],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs-legacy", metavar="PYTHON", help="interpreter with the original scvi installed")
    parser.add_argument("--modes", nargs="+", default=["vanilla", "change"], choices=["vanilla", "change"])
    parser.add_argument("--n-cells", type=int, default=5000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--n-clusters", type=int, default=10)
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every run (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["ours", "legacy"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(_child(args.child, args.data, args.mode, args.n_samples, args.threads, args.seed)))
        return

    sys.path.insert(0, str(REPO))
    import numpy as np

    from scvi.dataset._planted import planted_counts

    truth = planted_counts(
        n_cells=args.n_cells,
        n_genes=args.n_genes,
        n_clusters=args.n_clusters,
        n_de_genes=min(50, args.n_genes // args.n_clusters),
        random_state=args.seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "planted.npz")
        np.savez(
            data_path,
            X=truth.X,
            batch_indices=truth.batch_indices,
            labels=truth.labels,
            gene_names=truth.gene_names.astype(str),
            cell_types=truth.cell_types.astype(str),
        )
        roles = [("ours", sys.executable)] + ([("legacy", args.vs_legacy)] if args.vs_legacy else [])
        report = dict(
            config=dict(
                n_cells=args.n_cells,
                n_genes=args.n_genes,
                n_clusters=args.n_clusters,
                n_samples=args.n_samples,
                repeats=args.repeats,
                threads=args.threads,
            ),
            results={},
        )
        for mode in args.modes:
            runs = {role: [] for role, _ in roles}
            for _ in range(args.repeats):  # interleaved: ours, legacy, ours, legacy ...
                for role, python in roles:
                    runs[role].append(_run(python, role, args, data_path, mode))
            result = {role: _summary(r) for role, r in runs.items()}
            if args.vs_legacy:
                result["speedup"] = round(result["legacy"]["median_seconds"] / result["ours"]["median_seconds"], 2)
                result["peak_rss_ratio_legacy_over_ours"] = round(
                    result["legacy"]["peak_rss_mb"] / result["ours"]["peak_rss_mb"], 2
                )
                result["de_rss_increase_ratio_legacy_over_ours"] = round(
                    result["legacy"]["de_rss_increase_mb"] / max(result["ours"]["de_rss_increase_mb"], 1.0), 2
                )
            report["results"][mode] = result
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
