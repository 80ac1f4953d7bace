"""How good a trained model is, from its checkpoint: musical fidelity of reconstructions and prior
samples (`fidelity`, also run at the end of training) and attribute control under both protocols with
their baselines (`control`, `scripts/evaluate.py`)."""

from musicvae.evaluation.control import ControlSettings, evaluate_control
from musicvae.evaluation.fidelity import FidelityConfig, evaluate_fidelity

__all__ = ["ControlSettings", "FidelityConfig", "evaluate_control", "evaluate_fidelity"]
