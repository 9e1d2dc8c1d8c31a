"""Spiking networks built on the event-driven operators of `diffbrain.ops`.

* `Network`: populations of any zoo spiking neuron, receptors wired by sparse `Edges` with per-synapse
  delays, Poisson `Background` input and current `Pulse` s; `Network.simulate` returns a `NetworkResult`.
* `from_adjacency`: any connectome (synapse counts, gap junctions) as a `Network`.
* `MultiArea`: the Joglekar et al. (2018) macaque multi-area model from the Markov et al. (2014) connectome.
* `EINetwork`: the Brette et al. (2007) COBA/CUBA benchmark, simulated with `simulate`.

Both results share `AbstractPopulationResult` (``rates``, ``rate_trace``, ``spike_trains``).
"""

from .adjacency import from_adjacency as from_adjacency
from .delays import DelayedCSR as DelayedCSR
from .ei import EINetwork as EINetwork
from .ei import EIResult as EIResult
from .ei import EIState as EIState
from .ei import rates as rates
from .ei import simulate as simulate
from .multiarea import MultiArea as MultiArea
from .network import AbstractPopulationResult as AbstractPopulationResult
from .network import Background as Background
from .network import Edges as Edges
from .network import GapJunctions as GapJunctions
from .network import Network as Network
from .network import NetworkResult as NetworkResult
from .network import NetworkState as NetworkState
from .network import Pulse as Pulse
from .network import simulate_network as simulate_network

__all__ = [
    "AbstractPopulationResult",
    "Background",
    "DelayedCSR",
    "EINetwork",
    "EIResult",
    "EIState",
    "Edges",
    "GapJunctions",
    "MultiArea",
    "Network",
    "NetworkResult",
    "NetworkState",
    "Pulse",
    "from_adjacency",
    "rates",
    "simulate",
    "simulate_network",
]
