"""Single-exponential synapse."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_positive
from .._param import param
from ._base import AbstractSynapse, as_spikes


class ExponState(NamedTuple):
    g: Array  # open fraction, 1 (a unit spike adds 1)


class Expon(AbstractSynapse):
    r"""Exponential synapse: each spike adds 1 to ``g``, which decays with time constant ``τ``.

    ``dg/dt = −g/τ + Σ_k s_k δ(t − t_k)``, kernel ``e^{−t/τ}`` (peak 1 at the spike). The cheapest synapse
    and the one the COBA/CUBA benchmark networks use. ``step`` applies the exact decay
    ``g ← g·e^{−dt/τ} + s``, so the response at the step times equals the kernel for any ``dt``; because the
    update is linear in ``s``, the state may also live on the postsynaptic side and take summed weighted
    spikes.

    Charge per spike: a neuron stepped with each step's ``g`` held over that step (`networks.Network`,
    `networks.EINetwork`) gets the end-of-step value, the spike that just arrived included, so a unit spike
    integrates to ``dt/(1 − e^{−dt/τ})`` ms of ``g`` instead of the kernel's ``τ``: a PSC of amplitude ``w``
    carries ``w·dt/(1 − e^{−dt/τ})`` of charge, not ``w·τ`` (+1 % at τ = 5 ms, +10 % at τ = 0.5 ms, for
    dt = 0.1 ms). Multiply the weights (or ``g_max``) by ``τ(1 − e^{−dt/τ})/dt`` to deliver the continuous
    PSC's charge (`networks.Microcircuit` does).

    Units: ``tau`` ms; ``g_max`` nS (coba) or pA (cuba); ``E`` mV.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain.zoo import synapses
        >>> syn = synapses.Expon(tau=5.0)
        >>> state, g = syn.step(syn.init_state(), True, dt=0.1)  # a spike at t = 0
        >>> for _ in range(50):  # 5 ms later
        ...     state, g = syn.step(state, False, dt=0.1)
        >>> round(float(g), 4), round(float(syn.current(g, V=-65.0)), 2)  # e^{-1}; pA
        (0.3679, 23.91)

    ??? cite "Reference"
        Brette, R. et al. (2007). Simulation of networks of spiking neurons: a review of tools and
        strategies. J. Comput. Neurosci. 23, 349–398.
    """

    State: ClassVar = ExponState

    tau: Float[Array, "*n"] = param(5.0, "ms", "decay time constant")
    g_max: Float[Array, "*n"] = param(1.0, "nS or pA", "maximal conductance (coba, nS) or current (cuba, pA)")
    E: Float[Array, "*n"] = param(0.0, "mV", "reversal potential (coba only)")
    mode: str = eqx.field(default="coba", static=True)

    def __check_init__(self):
        check_positive("Expon", "tau", self.tau, "ms")

    def init_state(self, shape: int | tuple[int, ...] = ()) -> ExponState:
        return ExponState(g=self._zeros(shape))

    def step(
        self, state: ExponState, spikes: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[ExponState, Float[Array, "*n"]]:
        dt = check_dt(dt)
        g = state.g * jnp.exp(-dt / self.tau) + as_spikes(spikes, state.g)
        return ExponState(g=g), g
