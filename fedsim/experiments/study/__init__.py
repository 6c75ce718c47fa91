"""Convergence studies: one real training run per sweep point, its record and the study tables."""
