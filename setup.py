"""Packaging for scvi: deep generative models of single-cell omics, API-compatible with scVI 0.6."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

install_requires = [
    # torch is pinned by the set-up commands (README.rst) *before* this package is installed: a
    # bare "torch" requirement would otherwise pull the CUDA build from the registry.
    "torch>=2.0",
    "numpy>=1.24",
    "scipy>=1.11",
    "pandas>=2.0",
    "h5py>=3.8",
    "loompy>=3.0.7",
    "anndata>=0.10",
    "scikit-learn>=1.3",
    "tqdm>=4.60",
    # SeqfishDataset reads the original .xlsx file (pandas.read_excel needs openpyxl).
    "openpyxl>=3.1",
]
extras_require = {
    "test": [
        "pytest>=7",
        "pytest-timeout>=2.1",
        "nbclient>=0.7",
        "nbformat>=5.7",
        "ipykernel>=6.20",
        "matplotlib>=3.7",
        "openpyxl>=3.1",
        "xlrd>=2.0",
        "hyperopt>=0.2.7",
        "pymongo>=4.6",
        "SecantusDB>=0.7.0b3",
    ],
    "docs": ["sphinx>=7", "sphinx-rtd-theme>=2", "numpydoc>=1.6"],
    "plot": ["matplotlib>=3.7"],
    "autotune": ["hyperopt>=0.2.7", "pymongo>=4.6", "SecantusDB>=0.7.0b3"],
    "notebooks": ["scanpy>=1.10", "umap-learn>=0.5", "seaborn>=0.12"],
}
extras_require["all"] = sorted({req for reqs in extras_require.values() for req in reqs})

setup(
    name="scvi",
    version="0.7.0",
    description="Deep generative models of single-cell omics (scVI 0.6 API on the modern scientific Python stack)",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["scvi", "scvi.*"]),
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={
        "console_scripts": [
            "scvi-autotune-worker=scvi.inference.autotune:worker_main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
