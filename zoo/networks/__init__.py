"""Spiking networks built on the event-driven operators of `diffbrain.ops`: the Brette et al. (2007)
COBA/CUBA benchmark (`EINetwork`), simulated with `simulate` (a jitted `lax.scan`)."""

from .ei import EINetwork as EINetwork
from .ei import EIResult as EIResult
from .ei import EIState as EIState
from .ei import rates as rates
from .ei import simulate as simulate

__all__ = ["EINetwork", "EIResult", "EIState", "rates", "simulate"]
