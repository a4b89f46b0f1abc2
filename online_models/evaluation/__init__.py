"""Evaluation: prequential replay, the baselines, dataset readers and synthetic data."""
