"""Neuron models: one per module, all `AbstractNeuron` PyTrees."""

from ._base import AbstractContinuousNeuron as AbstractContinuousNeuron
from ._base import AbstractNeuron as AbstractNeuron
from ._base import AbstractSpikingNeuron as AbstractSpikingNeuron
from ._hh_base import AbstractHH as AbstractHH
from ._hh_base import GateRates as GateRates
from ._hh_base import HHState as HHState
from .adex import AdEx as AdEx
from .adex import AdExState as AdExState
from .alif import ALIF as ALIF
from .alif import ALIFState as ALIFState
from .gif import GIF as GIF
from .gif import AbstractGIF as AbstractGIF
from .gif import GIFState as GIFState
from .gif import InterpolatedGIF as InterpolatedGIF
from .hh import HH as HH
from .izhikevich import Izhikevich as Izhikevich
from .izhikevich import IzhikevichState as IzhikevichState
from .lif import LIF as LIF
from .lif import LIFState as LIFState
from .traub_hh import TraubHH as TraubHH
