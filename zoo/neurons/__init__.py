"""Neuron models: one per module, all `AbstractNeuron` PyTrees."""

from ._base import AbstractContinuousNeuron as AbstractContinuousNeuron
from ._base import AbstractNeuron as AbstractNeuron
from ._base import AbstractSpikingNeuron as AbstractSpikingNeuron
from .lif import LIF as LIF
from .lif import LIFState as LIFState
