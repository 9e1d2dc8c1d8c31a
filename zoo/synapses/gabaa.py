"""GABA_A receptor synapse with Destexhe et al. (1994) transmitter-pulse kinetics."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float

from .._param import param
from ._base import AbstractKineticSynapse


class GABAa(AbstractKineticSynapse):
    r"""GABA_A receptor: fast inhibitory kinetics ``dg/dt = α[T](1 − g) − βg``.

    The same scheme as `AMPA` (exact integration of the pulse and of the decay, see
    `AbstractKineticSynapse`) with a longer, stronger GABA pulse, slower binding and a chloride reversal
    potential of −80 mV, so the coba current is outward (negative) above −80 mV. Defaults are BrainPy's.

    Units: ``alpha`` 1/(ms·mM), ``beta`` 1/ms, ``T_max`` mM, ``T_dur`` ms; ``g_max`` nS (coba) or pA (cuba);
    ``E`` mV.

    Examples:
        >>> from diffbrain.zoo import synapses
        >>> syn = synapses.GABAa()
        >>> state, g = syn.step(syn.init_state(), True, dt=0.1)  # a spike at t = 0
        >>> for _ in range(10):  # to the end of the 1 ms pulse
        ...     state, g = syn.step(state, False, dt=0.1)
        >>> round(float(g), 4), float(syn.current(g, V=-65.0)) < 0
        (0.3795, True)

    ??? cite "Reference"
        Destexhe, A., Mainen, Z. F. & Sejnowski, T. J. (1994). An efficient method for computing synaptic
        conductances based on a kinetic model of receptor binding. Neural Comput. 6, 14–18.
    """

    alpha: Float[Array, "*n"] = param(0.53, "1/(ms·mM)", "binding (opening) rate")
    beta: Float[Array, "*n"] = param(0.18, "1/ms", "unbinding (closing) rate")
    T_max: Float[Array, "*n"] = param(1.0, "mM", "transmitter concentration during a pulse")
    T_dur: Float[Array, "*n"] = param(1.0, "ms", "transmitter pulse duration")
    g_max: Float[Array, "*n"] = param(1.0, "nS or pA", "maximal conductance (coba, nS) or current (cuba, pA)")
    E: Float[Array, "*n"] = param(-80.0, "mV", "reversal potential (coba only)")
    mode: str = eqx.field(default="coba", static=True)
