"""Models: each file holds a module (the math) and a model (the user's API)."""

from scprob.models.cellassign import CellAssign
from scprob.models.scvi import SCVI, VAE
from scprob.models.stereoscope import RNAStereoscope, SpatialStereoscope
from scprob.models.totalvi import TOTALVAE, TOTALVI

__all__ = ["SCVI", "TOTALVAE", "TOTALVI", "VAE", "CellAssign", "RNAStereoscope",
           "SpatialStereoscope"]
