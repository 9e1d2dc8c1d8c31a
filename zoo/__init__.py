"""The model zoo: neurons, synapses and surrogate spike functions as Equinox PyTrees, and their simulation."""

from . import neurons as neurons
from . import stimulus as stimulus
from . import surrogate as surrogate
from ._param import ParamInfo as ParamInfo
from ._param import astype as astype
from ._param import describe as describe
from .neurons import ALIF as ALIF
from .neurons import GIF as GIF
from .neurons import HH as HH
from .neurons import LIF as LIF
from .neurons import AbstractContinuousNeuron as AbstractContinuousNeuron
from .neurons import AbstractNeuron as AbstractNeuron
from .neurons import AbstractSpikingNeuron as AbstractSpikingNeuron
from .neurons import AdEx as AdEx
from .neurons import Izhikevich as Izhikevich
from .neurons import TraubHH as TraubHH
from .simulate import Trace as Trace
from .simulate import simulate as simulate
from .solve import solve as solve
