"""The §2.3 totalVI tutorial workflow, as written, on the PBMC10k CITE-seq fixture (200 cells, 14 proteins)."""
import numpy as np
import pytest
import torch

from scvi import set_seed
from scvi.dataset import AnnDatasetFromAnnData
from scvi.inference import TotalPosterior, TotalTrainer
from scvi.models import TOTALVI


def filter_dataset(dataset):
    """The tutorial's filtering, as written."""
    high_count_genes = (dataset.X > 0).sum(axis=0).ravel() > 0.01 * dataset.X.shape[0]
    dataset.update_genes(high_count_genes)
    dataset.subsample_genes(4000)

    non_control_proteins = [i for i, p in enumerate(dataset.protein_names) if not p.startswith("IgG")]
    dataset.protein_expression = dataset.protein_expression[:, non_control_proteins]
    dataset.protein_names = dataset.protein_names[non_control_proteins]

    high_gene_count_cells = (dataset.X > 0).sum(axis=1).ravel() > 200
    protein_totals = dataset.protein_expression.sum(axis=1)
    high_protein_cells = protein_totals >= np.percentile(protein_totals, 1)
    inds_to_keep = np.logical_and(high_gene_count_cells, high_protein_cells)
    dataset.update_cells(inds_to_keep)
    return dataset, inds_to_keep


@pytest.mark.data
def test_totalvi_tutorial_on_pbmc10k(legacy_fixtures):
    anndata = pytest.importorskip("anndata")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_seed(0)
        adata = anndata.read_h5ad(legacy_fixtures / "pbmc_10k_protein_v3.h5ad")
        dataset = AnnDatasetFromAnnData(
            ad=adata, cell_measurements_col_mappings={"protein_expression": "protein_names"}
        )
        assert dataset.protein_expression.shape == (200, 14)
        np.testing.assert_array_equal(dataset.protein_expression, adata.obsm["protein_expression"])
        dataset, inds_to_keep = filter_dataset(dataset)
        assert dataset.nb_genes == 4000 and len(dataset) == inds_to_keep.sum() > 150

        totalvae = TOTALVI(dataset.nb_genes, len(dataset.protein_names))
        early_stopping_kwargs = {
            "early_stopping_metric": "elbo",
            "save_best_state_metric": "elbo",
            "patience": 45,
            "threshold": 0,
            "reduce_lr_on_plateau": True,
            "lr_patience": 30,
            "lr_factor": 0.6,
            "posterior_class": TotalPosterior,
        }
        trainer = TotalTrainer(
            totalvae,
            dataset,
            train_size=0.90,
            test_size=0.10,
            use_cuda=True,
            frequency=1,
            data_loader_kwargs={"batch_size": 256},
            early_stopping_kwargs=early_stopping_kwargs,
            show_progbar=False,
        )
        n_epochs = 10
        trainer.train(lr=4e-3, n_epochs=n_epochs)
        train_elbo, test_elbo = trainer.history["elbo_train_set"], trainer.history["elbo_test_set"]
        assert len(train_elbo) >= n_epochs and len(test_elbo) >= n_epochs
        assert min(train_elbo[1:]) < 0.9 * train_elbo[0] and min(test_elbo[1:]) < test_elbo[0]

        full_posterior = trainer.create_posterior(
            totalvae, dataset, indices=np.arange(len(dataset)), type_class=TotalPosterior
        )
        full_posterior = full_posterior.update({"batch_size": 32})
        latent_mean, batch_index, label, library_gene = full_posterior.sequential().get_latent()
        n_cells, n_proteins = len(dataset), len(dataset.protein_names)
        assert latent_mean.shape == (n_cells, 20) and library_gene.shape == (n_cells,)
        np.testing.assert_allclose(latent_mean.sum(1), 1, rtol=1e-4)

        n_samples = 25
        py_mixing = full_posterior.sequential().get_sample_mixing(n_samples=n_samples, give_mean=True)
        assert py_mixing.shape == (n_cells, n_proteins) and ((py_mixing >= 0) & (py_mixing <= 1)).all()
        denoised_genes, denoised_proteins = full_posterior.sequential().get_normalized_denoised_expression(
            n_samples=n_samples, give_mean=True
        )
        assert denoised_genes.shape == (n_cells, dataset.nb_genes)
        assert denoised_proteins.shape == (n_cells, n_proteins)
        assert np.isfinite(denoised_proteins).all() and (denoised_proteins >= 0).all()
        # sequential() keeps the dataset order: library sizes follow the cells' total counts
        totals = np.log(np.asarray(dataset.X.sum(axis=1)).ravel())
        assert np.corrcoef(np.log(library_gene), totals)[0, 1] > 0.5
    finally:
        torch.set_num_threads(threads)


def test_legacy_totalvi_benchmark_sequence(tmp_path):
    """The calls of scvi 0.6's ``benchmark.totalvi_benchmark`` and its test, on ``SyntheticDataset``."""
    from scvi.dataset import SyntheticDataset
    from scvi.inference.posterior_utils import load_posterior

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for n_batches in (1, 2):
            dataset = SyntheticDataset(n_batches=n_batches)
            totalvae = TOTALVI(dataset.nb_genes, len(dataset.protein_names), n_batch=dataset.n_batches)
            trainer = TotalTrainer(
                totalvae, dataset, train_size=0.5, use_cuda=False, early_stopping_kwargs=None, show_progbar=False
            )
            trainer.train(n_epochs=1)
            test_set = trainer.test_set
            assert np.isfinite(test_set.reconstruction_error())
            assert np.isfinite(test_set.marginal_ll(n_mc_samples=3))
            n_cells = test_set.nb_cells
            assert test_set.get_protein_background_mean().shape == (n_cells, 100)
            assert test_set.get_latent()[0].shape == (n_cells, 20)
            assert test_set.generate(n_samples=2)[0].shape == (n_cells, 200, 2)
            assert test_set.get_sample_dropout().shape == (n_cells, 100)
            test_set.get_normalized_denoised_expression(transform_batch=0)
            assert test_set.imputation().shape == (n_cells, 100)
            assert test_set.get_protein_mean().shape == (n_cells, 100)
            de_tables, clusters = test_set.one_vs_all_degenes(n_samples=2, M_permutation=10)
            assert len(de_tables) == len(clusters) and len(de_tables[0]) == 200  # genes + proteins
            assert test_set.generate_feature_correlation_matrix(n_samples=2).shape == (200, 200)
            if n_batches == 2:
                test_set.generate_feature_correlation_matrix(n_samples=2, transform_batch=[0, 1])

        adversarial = TotalTrainer(
            totalvae, dataset, train_size=0.5, use_cuda=False, early_stopping_kwargs=None,
            use_adversarial_loss=True, show_progbar=False,
        )
        adversarial.train(n_epochs=1)
        original = adversarial.create_posterior(
            totalvae, dataset, indices=np.arange(len(dataset)), type_class=TotalPosterior
        )
        original.save_posterior(str(tmp_path / "posterior"))
        new_totalvae = TOTALVI(dataset.nb_genes, len(dataset.protein_names), n_batch=dataset.n_batches)
        new_post = load_posterior(str(tmp_path / "posterior"), model=new_totalvae, use_cuda=False)
        assert new_post.posterior_type == "TotalPosterior"
        np.testing.assert_array_equal(new_post.gene_dataset.protein_expression, dataset.protein_expression)
    finally:
        torch.set_num_threads(threads)
