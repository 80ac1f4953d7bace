"""Pure functions on tensors and notes, below every package that measures: latent statistics (active
units, mutual information, derangement: training logs them live, the report reads them) and music
statistics (per-bar chroma / groove similarity, pitch-class entropy, note density)."""

from musicvae.metrics.latent import active_units, mutual_information
from musicvae.metrics.music import chroma_similarity, groove_similarity

__all__ = ["active_units", "chroma_similarity", "groove_similarity", "mutual_information"]
