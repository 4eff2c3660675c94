"""Bayes-factor differential expression (being written under issue 5)."""


class DifferentialExpressionMixin:
    """Differential-expression methods of the Posterior (under construction, issue 5)."""
