"""Every config node's defaults registered (`schema/<name>` in Hydra's ConfigStore; musicvae.config): import
this before composing a config with `hydra.compose` outside the commands (a notebook, a test). The commands
import what they compose already."""

from musicvae.config import SCHEMAS
from musicvae.evaluation import control, fidelity, pieces  # noqa: F401  schema/evaluate, /fidelity, /pieces
from musicvae.generation import attribute_vectors, audio, modes  # noqa: F401  schema/attributes, /audio, /sample
from musicvae.training import kl, media, optim  # noqa: F401  schema/kl, schema/media, schema/optim (data, model, conditioning below them)

__all__ = ["SCHEMAS"]
