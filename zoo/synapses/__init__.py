"""Synapse models: one per module, all `AbstractSynapticDynamics` PyTrees.

`SYNAPSES` maps the command-line names to the classes (each builds with its default parameters).
"""

from ._base import AbstractKineticSynapse as AbstractKineticSynapse
from ._base import AbstractSynapse as AbstractSynapse
from ._base import AbstractSynapticDynamics as AbstractSynapticDynamics
from ._base import KineticState as KineticState
from .alpha import Alpha as Alpha
from .alpha import AlphaState as AlphaState
from .ampa import AMPA as AMPA
from .dual_expon import DualExpon as DualExpon
from .dual_expon import DualExponState as DualExponState
from .expon import Expon as Expon
from .expon import ExponState as ExponState
from .gabaa import GABAa as GABAa
from .nmda import NMDA as NMDA
from .nmda import NMDAState as NMDAState
from .stp import STP as STP
from .stp import STPState as STPState

SYNAPSES: dict[str, type[AbstractSynapticDynamics]] = {
    "expon": Expon,
    "dual-expon": DualExpon,
    "alpha": Alpha,
    "ampa": AMPA,
    "gabaa": GABAa,
    "nmda": NMDA,
    "stp": STP,
}
"""Every synapse model by command-line name."""
