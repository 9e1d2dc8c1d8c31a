"""Spiking networks built on the event-driven operators of `diffbrain.ops`.

* `Network`: populations of any zoo spiking neuron, receptors wired by sparse `Edges` with per-synapse
  delays, Poisson `Background` input and current `Pulse` s; `Network.simulate` returns a `NetworkResult`,
  and `simulate_network_sharded` the same with the neurons split over several devices.
* `from_adjacency`: any connectome (synapse counts, gap junctions) as a `Network`.
* `Microcircuit`: the Potjans & Diesmann (2014) cortical microcircuit at a chosen scale (`synapse_counts`,
  `psc_amplitude` are its conversions).
* `MultiArea`: the Joglekar et al. (2018) macaque multi-area model from the Markov et al. (2014) connectome.
* `EINetwork`: the Brette et al. (2007) COBA/CUBA benchmark, simulated with `simulate`, or with its
  neurons split over several devices with `simulate_sharded`.

Both results share `AbstractPopulationResult` (``rates``, ``rate_trace``, ``spike_trains``).
"""

from .adjacency import from_adjacency as from_adjacency
from .delays import DelayedCSR as DelayedCSR
from .ei import EINetwork as EINetwork
from .ei import EIResult as EIResult
from .ei import EIState as EIState
from .ei import rates as rates
from .ei import simulate as simulate
from .microcircuit import Microcircuit as Microcircuit
from .microcircuit import psc_amplitude as psc_amplitude
from .microcircuit import synapse_counts as synapse_counts
from .multiarea import MultiArea as MultiArea
from .multiarea import PulseResponse as PulseResponse
from .network import AbstractPopulationResult as AbstractPopulationResult
from .network import Background as Background
from .network import Edges as Edges
from .network import GapJunctions as GapJunctions
from .network import Network as Network
from .network import NetworkResult as NetworkResult
from .network import NetworkState as NetworkState
from .network import Pulse as Pulse
from .network import simulate_network as simulate_network
from .network_sharded import simulate_network_sharded as simulate_network_sharded
from .sharded import simulate_sharded as simulate_sharded

__all__ = [
    "AbstractPopulationResult",
    "Background",
    "DelayedCSR",
    "EINetwork",
    "EIResult",
    "EIState",
    "Edges",
    "GapJunctions",
    "Microcircuit",
    "MultiArea",
    "Network",
    "NetworkResult",
    "NetworkState",
    "Pulse",
    "PulseResponse",
    "from_adjacency",
    "psc_amplitude",
    "rates",
    "simulate",
    "simulate_network",
    "simulate_network_sharded",
    "simulate_sharded",
    "synapse_counts",
]
