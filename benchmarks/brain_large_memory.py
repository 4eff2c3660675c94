"""Peak memory and time of ``BrainLargeDataset`` on a 10x-layout h5 of realistic size.

Writes a Cell Ranger 1-2 layout h5 (``/mm10/{data, indices, indptr, shape, genes, gene_names,
barcodes}``) of 300,000 cells x 27,998 genes with about 2,000 UMIs per cell drawn from a Zipf-like
gene distribution (about 1,000 detected genes per cell, as in 10x brain data), then loads it with
``BrainLargeDataset`` in a fresh process and prints, as JSON, the loader's peak RSS, its time and
the size of the loaded sparse result. The loader passes when its peak RSS stays under
3 x (size of the result) + 500 MB.

Usage::

    python benchmarks/brain_large_memory.py [--n-cells 300000] [--n-genes 27998] [--keep FILE] [--vs-legacy]

``--vs-legacy`` also loads the file with the original scVI 0.6.8 (``/work/legacy-venv``). Timings
on a shared machine are noisy.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LEGACY_PYTHON = Path("/work/legacy-venv/bin/python")

# Runs in a fresh interpreter: loads the file and reports peak RSS (KiB), time and result size. The peak
# is the process's VmHWM: ru_maxrss would carry over the parent's peak across fork + exec on Linux.
_LOAD = """
import json, sys, time, logging

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

from scvi.dataset import BrainLargeDataset
logging.getLogger("scvi").setLevel(logging.WARNING)
rss_before = peak_kib()
start = time.perf_counter()
dataset = BrainLargeDataset(filename=sys.argv[2], save_path=sys.argv[1])
seconds = time.perf_counter() - start
X = dataset.X
nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
print(json.dumps({"seconds": seconds, "peak_rss_kib": peak_kib(), "rss_after_imports_kib": rss_before,
                  "result_bytes": int(nbytes), "shape": list(X.shape), "nnz": int(X.nnz)}))
"""


def write_brain_like_h5(path: Path, n_cells: int, n_genes: int, umis_per_cell: float = 2000.0, seed: int = 0) -> dict:
    """Write a 10x h5 (genes x cells CSC, like the real 1M neurons file), chunk by chunk."""
    import h5py

    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(n_genes) + 10.0) ** 1.1  # Zipf-like gene abundances
    probabilities = weights[rng.permutation(n_genes)]
    probabilities /= probabilities.sum()
    chunk_cells = 1000  # counts via bincount over chunk_cells x n_genes bins
    nnz = 0
    with h5py.File(path, "w") as handle:
        group = handle.create_group("mm10")
        data = group.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        indices = group.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        indptr = np.zeros(n_cells + 1, dtype=np.int64)
        cdf = np.cumsum(probabilities)
        cdf[-1] = 1.0
        for first in range(0, n_cells, chunk_cells):
            n = min(chunk_cells, n_cells - first)
            library = np.maximum(rng.lognormal(np.log(umis_per_cell), 0.45, size=n).astype(np.int64), 50)
            cells = np.repeat(np.arange(n, dtype=np.int64), library)
            genes = np.searchsorted(cdf, rng.random(int(library.sum())), side="right")
            umis = np.bincount(cells * n_genes + genes, minlength=n * n_genes)
            keys = np.flatnonzero(umis)
            cell_of_key, gene_of_key = np.divmod(keys, n_genes)
            indptr[first + 1 : first + n + 1] = nnz + np.cumsum(np.bincount(cell_of_key, minlength=n))
            data.resize((nnz + len(keys),))
            indices.resize((nnz + len(keys),))
            data[nnz:] = umis[keys].astype(np.int32)
            indices[nnz:] = gene_of_key.astype(np.int32)
            nnz += len(keys)
        group["indptr"] = indptr
        group["shape"] = np.asarray([n_genes, n_cells], dtype=np.int64)
        group["genes"] = np.asarray([f"ENSMUSG{i:011d}" for i in range(n_genes)], dtype="S18")
        group["gene_names"] = np.asarray([f"Gene{i}" for i in range(n_genes)], dtype="S16")
        group["barcodes"] = np.asarray([f"CELL{i:012d}-1" for i in range(n_cells)], dtype="S18")
    return {"n_cells": n_cells, "n_genes": n_genes, "nnz": int(nnz), "file_mb": round(path.stat().st_size / 2**20, 1)}


def load_in_fresh_process(python: str, path: Path, env: dict, cwd: str) -> dict:
    out = subprocess.run(
        [python, "-c", _LOAD, str(path.parent), path.name],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    report = json.loads(out.stdout.strip().splitlines()[-1])
    result_mb = report["result_bytes"] / 2**20
    peak_mb = report.pop("peak_rss_kib") / 1024
    report.update(
        {
            "seconds": round(report["seconds"], 1),
            "peak_rss_mb": round(peak_mb, 1),
            "rss_after_imports_mb": round(report.pop("rss_after_imports_kib") / 1024, 1),
            "result_mb": round(result_mb, 1),
            "limit_mb": round(3 * result_mb + 500, 1),
            "within_limit": bool(peak_mb < 3 * result_mb + 500),
        }
    )
    report.pop("result_bytes")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-cells", type=int, default=300_000)
    parser.add_argument("--n-genes", type=int, default=27_998)
    parser.add_argument("--keep", type=Path, default=None, help="write the h5 here (and reuse it if present)")
    parser.add_argument("--vs-legacy", action="store_true", help="also load with scVI 0.6.8 from /work/legacy-venv")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="brain_large_bench_") as tmp:
        path = args.keep if args.keep is not None else Path(tmp) / "brain_large.h5"
        start = time.perf_counter()
        if path.exists():
            import h5py

            with h5py.File(path, "r") as handle:
                n_genes, n_cells = (int(n) for n in handle["mm10/shape"][()])
                nnz = int(handle["mm10/data"].shape[0])
            file_mb = round(path.stat().st_size / 2**20, 1)
            data_info = {"n_cells": n_cells, "n_genes": n_genes, "nnz": nnz, "file_mb": file_mb}
        else:
            data_info = write_brain_like_h5(path, args.n_cells, args.n_genes)
        data_info["write_seconds"] = round(time.perf_counter() - start, 1)
        data_info["umis_per_cell"] = 2000

        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        report = {"data": data_info, "scvi": load_in_fresh_process(sys.executable, path, env, cwd=str(REPO))}
        if args.vs_legacy:
            if LEGACY_PYTHON.exists():
                legacy_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                report["legacy_scvi_0.6.8"] = load_in_fresh_process(str(LEGACY_PYTHON), path, legacy_env, cwd=tmp)
            else:
                report["legacy_scvi_0.6.8"] = {"error": f"{LEGACY_PYTHON} not found"}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
