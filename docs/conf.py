"""Sphinx configuration: API pages are generated from the docstrings (numpydoc style)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "scvi"
author = "scvi developers"
release = "0.7.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_mock_imports = ["hyperopt", "secantus"]
napoleon_numpy_docstring = True
napoleon_google_docstring = False
templates_path = []
exclude_patterns = ["_build"]
try:
    import sphinx_rtd_theme  # noqa: F401

    html_theme = "sphinx_rtd_theme"
except ImportError:  # the docs still build with the default theme
    html_theme = "alabaster"
suppress_warnings = ["autosummary.import_cycle"]
