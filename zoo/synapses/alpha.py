"""Alpha-function synapse, normalised to a unit peak."""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_positive
from .._param import param
from ._base import AbstractSynapse, as_spikes


class AlphaState(NamedTuple):
    g: Array  # open fraction, 1 (peak 1 after a unit spike)
    h: Array  # exponential trace: each spike adds 1, decays with tau; 1


class Alpha(AbstractSynapse):
    r"""Alpha synapse: kernel ``(t/τ)·e^{1 − t/τ}``, which rises from 0 to its peak 1 at ``t = τ``.

    The limit of `DualExpon` when the rise and decay times meet. It is the two-state linear system
    ``dh/dt = −h/τ + Σ s_k δ(t − t_k)``, ``dg/dt = (e·h − g)/τ``, which ``step`` advances exactly
    (``g ← (g + e·h·dt/τ)·e^{−dt/τ}``, ``h ← h·e^{−dt/τ} + s``), so the response at the step times equals the
    kernel for any ``dt``.

    Units: ``tau`` ms; ``g_max`` nS (coba) or pA (cuba); ``E`` mV.

    Examples:
        >>> from diffbrain.zoo import synapses
        >>> syn = synapses.Alpha(tau=5.0)
        >>> state, g = syn.step(syn.init_state(), True, dt=0.5)  # a spike at t = 0: g(0) = 0
        >>> for _ in range(10):  # t = τ
        ...     state, g = syn.step(state, False, dt=0.5)
        >>> round(float(g), 6)
        1.0

    ??? cite "Reference"
        Rall, W. (1967). Distinguishing theoretical synaptic potentials computed for different soma-dendritic
        distributions of synaptic input. J. Neurophysiol. 30, 1138–1168.
    """

    State: ClassVar = AlphaState

    tau: Float[Array, "*n"] = param(5.0, "ms", "time constant (time to peak)")
    g_max: Float[Array, "*n"] = param(1.0, "nS or pA", "maximal conductance (coba, nS) or current (cuba, pA)")
    E: Float[Array, "*n"] = param(0.0, "mV", "reversal potential (coba only)")
    mode: str = eqx.field(default="coba", static=True)

    def __check_init__(self):
        check_positive("Alpha", "tau", self.tau, "ms")

    def init_state(self, shape: int | tuple[int, ...] = ()) -> AlphaState:
        zeros = self._zeros(shape)
        return AlphaState(g=zeros, h=zeros)

    def step(
        self, state: AlphaState, spikes: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[AlphaState, Float[Array, "*n"]]:
        dt = check_dt(dt)
        decay = jnp.exp(-dt / self.tau)
        g = (state.g + math.e * state.h * dt / self.tau) * decay
        h = state.h * decay + as_spikes(spikes, state.h)
        return AlphaState(g=g, h=h), g
