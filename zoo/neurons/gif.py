"""Generalized integrate-and-fire neuron of Mihalas & Niebur (2009)."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less, check_nonnegative, check_positive
from .._integrate import exp_euler
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron, jump


class GIFState(NamedTuple):
    V: Array  # membrane potential, mV
    V_th: Array  # adaptive threshold, mV
    I1: Array  # first spike-induced current, nA
    I2: Array  # second spike-induced current, nA


class GIF(AbstractSpikingNeuron):
    r"""Mihalas–Niebur generalized integrate-and-fire neuron with the paper's differentiable reset.

    ``dI_j/dt = −k_j·I_j``, ``τ dV/dt = −(V − V_rest) + R·(I1 + I2 + I)``,
    ``dV_th/dt = a·(V − V_rest) − b·(V_th − V_th_inf)``. A spike ``s`` (``V ≥ V_th``) applies
    ``V ← V − (V − V_reset)·s``, ``I_j ← I_j + s·(R_j·I_j + A_j − I_j)`` and
    ``V_th ← V_th + s·(max(V_th_reset, V_th) − V_th)``. Defaults are BrainPy's (and the paper's).

    Units: V mV, I nA, R MΩ (MΩ·nA = mV), τ ms, k_j 1/ms, a 1/ms, b 1/ms, A_j nA, R_j dimensionless.

    Note: with ``A1 = A2 = 0`` (the default) and zero initial currents, I1 and I2 stay zero, so ``k1``,
    ``k2``, ``R1``, ``R2`` have no effect on the voltage.

    Example:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.GIF(), jnp.full(10_000, 1.5), dt=0.1)  # 1 s at 1.5 nA
        >>> int(trace.spike_count)
        45

    ??? cite "Reference"
        Mihalas, Ş. & Niebur, E. (2009). A generalized linear integrate-and-fire neural model produces
        diverse spiking behaviors. Neural Computation 21, 704–718.
    """

    State: ClassVar = GIFState
    input_unit: ClassVar[str] = "nA"

    V_rest: Float[Array, "*n"] = param(-70.0, "mV", "resting potential")
    V_reset: Float[Array, "*n"] = param(-70.0, "mV", "reset potential")
    V_th_inf: Float[Array, "*n"] = param(-50.0, "mV", "threshold at rest")
    V_th_reset: Float[Array, "*n"] = param(-60.0, "mV", "lower bound of the threshold after a spike")
    R: Float[Array, "*n"] = param(20.0, "MΩ", "membrane resistance")
    tau: Float[Array, "*n"] = param(20.0, "ms", "membrane time constant")
    a: Float[Array, "*n"] = param(0.0, "1/ms", "threshold's coupling to V")
    b: Float[Array, "*n"] = param(0.01, "1/ms", "threshold's relaxation rate")
    k1: Float[Array, "*n"] = param(0.2, "1/ms", "decay rate of I1")
    k2: Float[Array, "*n"] = param(0.02, "1/ms", "decay rate of I2")
    R1: Float[Array, "*n"] = param(0.0, "1", "fraction of I1 kept at a spike")
    R2: Float[Array, "*n"] = param(1.0, "1", "fraction of I2 kept at a spike")
    A1: Float[Array, "*n"] = param(0.0, "nA", "I1 added at a spike")
    A2: Float[Array, "*n"] = param(0.0, "nA", "I2 added at a spike")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        check_positive("GIF", "R", self.R, "MΩ")
        check_positive("GIF", "tau", self.tau, "ms")
        for name in ("k1", "k2", "b"):
            check_nonnegative("GIF", name, getattr(self, name), "1/ms")
        check_less("GIF", "V_reset", self.V_reset, "V_th_inf", self.V_th_inf)

    def init_state(self, shape: tuple[int, ...] = ()) -> GIFState:
        V = self._full(shape, self.V_rest)
        zeros = 0.0 * V
        return GIFState(V=V, V_th=self._full(shape, self.V_th_inf) + zeros, I1=zeros, I2=zeros)

    def step(self, state: GIFState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[GIFState, Array]:
        dt = check_dt(dt)
        V, V_th, I1, I2 = state
        dV = (self.V_rest - V + self.R * (I1 + I2 + current)) / self.tau
        dV_th = self.a * (V - self.V_rest) - self.b * (V_th - self.V_th_inf)
        V_new = exp_euler(V, dV, 1 / self.tau, dt)
        V_th = exp_euler(V_th, dV_th, self.b, dt)
        I1 = exp_euler(I1, -self.k1 * I1, self.k1, dt)
        I2 = exp_euler(I2, -self.k2 * I2, self.k2, dt)
        spike = self.spike_fn(V_new - V_th)
        gate = self._reset_gate(spike)
        V_new = jump(V_new, self.V_reset, gate)
        I1 = jump(I1, self.R1 * I1 + self.A1, gate)
        I2 = jump(I2, self.R2 * I2 + self.A2, gate)
        V_th = jump(V_th, jnp.maximum(self.V_th_reset, V_th), gate)
        return GIFState(V=V_new, V_th=V_th, I1=I1, I2=I2), spike
