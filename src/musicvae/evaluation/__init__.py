"""How good a trained model is, from its checkpoint: whole test pieces reconstructed as `sample.py` makes them,
beside the shuffled-z floor (`pieces`, `scripts/evaluate.py fidelity=true`); 2-bar test segments reconstructed
and prior samples (`fidelity`); both also run at the end of training; and attribute control under both
protocols with their baselines (`control`, `scripts/evaluate.py control=true`)."""

from musicvae.evaluation.control import ControlSettings, evaluate_control
from musicvae.evaluation.fidelity import FidelityConfig, evaluate_fidelity
from musicvae.evaluation.pieces import PieceFidelityConfig, evaluate_pieces

__all__ = ["ControlSettings", "FidelityConfig", "PieceFidelityConfig", "evaluate_control", "evaluate_fidelity",
           "evaluate_pieces"]
