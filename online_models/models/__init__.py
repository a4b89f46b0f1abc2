"""The online models: each learns from events and proposes candidates (state in arrays, kernels compiled)."""
