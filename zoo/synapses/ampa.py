"""AMPA receptor synapse with Destexhe et al. (1994) transmitter-pulse kinetics."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, Float

from .._param import param
from ._base import AbstractKineticSynapse


class AMPA(AbstractKineticSynapse):
    r"""AMPA receptor: fast excitatory kinetics ``dg/dt = α[T](1 − g) − βg``.

    A spike releases a square pulse of glutamate, ``[T] = T_max`` for ``T_dur`` ms; the receptors open
    towards ``g_∞ = αT_max/(αT_max + β)`` during the pulse and close at rate ``β`` after it. ``step``
    integrates both phases exactly (see `AbstractKineticSynapse`), so ``g`` is the closed form at every step:
    with ``t`` the time since a spike on a closed synapse, ``g = g_∞(1 − e^{−(αT_max+β)t})`` for
    ``t ≤ T_dur`` and ``g(T_dur)·e^{−β(t − T_dur)}`` after. ``g`` stays in [0, 1]. Defaults are BrainPy's.

    Units: ``alpha`` 1/(ms·mM), ``beta`` 1/ms, ``T_max`` mM, ``T_dur`` ms; ``g_max`` nS (coba) or pA (cuba);
    ``E`` mV.

    Examples:
        >>> from diffbrain.zoo import synapses
        >>> syn = synapses.AMPA()
        >>> state, g = syn.step(syn.init_state(), True, dt=0.1)  # a spike at t = 0
        >>> for _ in range(5):  # to the end of the 0.5 ms pulse
        ...     state, g = syn.step(state, False, dt=0.1)
        >>> round(float(g), 4)
        0.2082

    ??? cite "Reference"
        Destexhe, A., Mainen, Z. F. & Sejnowski, T. J. (1994). An efficient method for computing synaptic
        conductances based on a kinetic model of receptor binding. Neural Comput. 6, 14–18.
    """

    alpha: Float[Array, "*n"] = param(0.98, "1/(ms·mM)", "binding (opening) rate")
    beta: Float[Array, "*n"] = param(0.18, "1/ms", "unbinding (closing) rate")
    T_max: Float[Array, "*n"] = param(0.5, "mM", "transmitter concentration during a pulse")
    T_dur: Float[Array, "*n"] = param(0.5, "ms", "transmitter pulse duration")
    g_max: Float[Array, "*n"] = param(1.0, "nS or pA", "maximal conductance (coba, nS) or current (cuba, pA)")
    E: Float[Array, "*n"] = param(0.0, "mV", "reversal potential (coba only)")
    mode: str = eqx.field(default="coba", static=True)
