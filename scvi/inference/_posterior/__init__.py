"""The focused parts the ``Posterior`` facade is assembled from (see docs/architecture.rst)."""
