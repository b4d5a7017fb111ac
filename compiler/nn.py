"""Trainable spiking neuron modules (``compiler.nn.LIF``, ``CubaLIF``, ``IF``, ``run``); imports torch."""

from .neurons import DATAPATHS, IF, LIF, CubaLIF, SpikingNeuron, loihi_decay, reset, run, xylo_dash

__all__ = ["SpikingNeuron", "LIF", "CubaLIF", "IF", "run", "reset", "loihi_decay", "xylo_dash", "DATAPATHS"]
