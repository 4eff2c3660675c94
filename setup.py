"""Packaging for scvi: deep generative models of single-cell omics, API-compatible with scVI 0.6."""
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

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

# Fused CPU kernels (C, OpenMP: the NB / ZINB likelihoods, sparse-input linear layers, dropout
# masks): optional. Without a C compiler the package installs all the same and uses torch
# operations (slower training).
KERNEL_FLAGS = ["-O3", "-std=c99", "-fno-math-errno", "-fno-trapping-math"]
# Tried in order: GCC with gathers enabled (the table lookups vectorise) and OpenMP, then
# without the GCC-specific tuning, then without OpenMP (one thread).
KERNEL_VARIANTS = [
    (["-fopenmp", "-mtune-ctrl=use_gather"], ["-fopenmp"]),
    (["-fopenmp"], ["-fopenmp"]),
    ([], []),
]


class BuildExtensions(build_ext):
    """``build_ext`` that retries the optional kernels with fewer compiler flags before giving up."""

    def build_extension(self, ext):
        if ext.name != "scvi._kernels":
            return super().build_extension(ext)
        for compile_args, link_args in KERNEL_VARIANTS:
            ext.extra_compile_args = KERNEL_FLAGS + compile_args
            ext.extra_link_args = link_args
            try:
                return super().build_extension(ext)
            except (CCompilerError, ExecError, PlatformError, OSError) as error:
                self.warn(f"building {ext.name} with {compile_args} failed ({error})")
        self.warn(f"{ext.name} not built: training will use torch operations instead")


kernels = Extension("scvi._kernels", sources=["scvi/_kernels.c"], optional=True)


setup(
    name="scvi",
    version="0.7.0",
    description="Deep generative models of single-cell omics (scVI 0.6 API on the modern scientific Python stack)",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["scvi", "scvi.*"]),
    ext_modules=[kernels],
    cmdclass={"build_ext": BuildExtensions},
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
