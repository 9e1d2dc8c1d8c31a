"""The model zoo: neurons, synapses and surrogate spike functions as Equinox PyTrees, and their simulation."""

from . import neurons as neurons
from . import surrogate as surrogate
from ._param import ParamInfo as ParamInfo
from ._param import astype as astype
from ._param import describe as describe
from .neurons import LIF as LIF
from .neurons import AbstractContinuousNeuron as AbstractContinuousNeuron
from .neurons import AbstractNeuron as AbstractNeuron
from .neurons import AbstractSpikingNeuron as AbstractSpikingNeuron
from .simulate import Trace as Trace
from .simulate import simulate as simulate
