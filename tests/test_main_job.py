"""The README's main job (``notebooks/main_job.py``) in its quick mode: outputs exist and reload."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def main_job():
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        yield importlib.import_module("main_job")
    finally:
        sys.path.remove(str(NOTEBOOKS))


@pytest.fixture(scope="module")
def quick_run(main_job, real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("main_job")
    return main_job.run(main_job.parse_args(["--quick", "--out", str(out)])), out


@pytest.mark.data
def test_quick_run_on_pbmc3k_writes_a_png_a_de_table_and_a_posterior_that_reloads(quick_run, capsys):
    result, out = quick_run
    assert result["source"].startswith("PBMC 3k")
    assert np.isfinite(result["elbo"]) and result["elbo"] > 0
    # -log p(x) <= -ELBO: the importance-sampled likelihood is a tighter bound than the ELBO
    assert np.isfinite(result["marginal_ll"]) and result["marginal_ll"] < result["elbo"]

    png = out / "latent_space.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[1] > 500

    table = pd.read_csv(out / "de_one_vs_all.csv", index_col=0)
    for column in ("bayes_factor", "proba_m1", "raw_mean1", "scale1", "clusters"):
        assert column in table.columns
    assert table["clusters"].nunique() >= 2
    # each cluster's table is sorted by decreasing Bayes factor
    for _, per_cluster in table.groupby("clusters", sort=False):
        assert per_cluster["bayes_factor"].is_monotonic_decreasing

    assert (out / "full_posterior").is_dir()
    assert result["reload_identical"] is True


@pytest.mark.data
def test_saved_posterior_reloads_with_the_legacy_loader(quick_run):
    from scvi.inference import load_posterior
    from scvi.models import VAE

    _, out = quick_run
    table = pd.read_csv(out / "de_one_vs_all.csv", index_col=0)
    n_genes = table.index.nunique()
    posterior = load_posterior(str(out / "full_posterior"), model=VAE(n_genes), use_cuda=False)
    latent, batch_indices, _ = posterior.sequential().get_latent()
    assert latent.shape == (len(posterior.gene_dataset), 10)
    assert np.all(batch_indices == 0)


def test_without_real_data_the_job_says_so_and_uses_synthetic_counts(main_job, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SCVI_SHARED_DATA", str(tmp_path / "nowhere"))
    args = main_job.parse_args(["--quick", "--n-epochs", "1", "--out", str(tmp_path / "out")])
    result = main_job.run(args)
    printed = capsys.readouterr().out
    assert "FALLING BACK TO SYNTHETIC DATA" in printed
    assert result["source"].startswith("SYNTHETIC")
    assert result["reload_identical"] is True
    assert (tmp_path / "out" / "latent_space.png").exists()


def test_bad_epoch_count_is_refused(main_job, capsys):
    with pytest.raises(SystemExit):
        main_job.parse_args(["--n-epochs", "0"])
    assert "--n-epochs must be a positive integer; got 0" in capsys.readouterr().err
