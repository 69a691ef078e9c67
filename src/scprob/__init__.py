"""scprob: compact probabilistic models for single-cell omics."""
