"""Models: each file holds a module (the math) and a model (the user's API)."""

from scprob.models.scvi import SCVI, VAE

__all__ = ["SCVI", "VAE"]
