"""Adaptive leaky integrate-and-fire neuron (the paper's task-network neuron)."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less, check_positive
from .._integrate import exp_euler
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron


class ALIFState(NamedTuple):
    V: Array  # membrane potential, mV
    I_adp: Array  # adaptation current (as its voltage effect R·I), mV


class ALIF(AbstractSpikingNeuron):
    r"""Adaptive LIF with a soft reset, written dimensionless as in the paper's E/I task networks.

    ``τ dV/dt = −V + V_rest + I + I_adp`` and ``τ_a dI_adp/dt = −I_adp``. A spike (``V ≥ V_th``) lowers
    ``V`` by ``V_th − V_reset`` (soft reset: the overshoot is kept) and adds ``−beta`` to ``I_adp``, so
    each spike makes the next one harder for about ``τ_a`` ms (spike-frequency adaptation).

    Units: V mV; the input I enters as ``R·I`` and is therefore in mV; τ, τ_a ms; beta mV.

    Precision: as in `LIF`, float32 loses any step's change of ``V`` below half a float spacing at ``|V|``
    (3.8e-6 mV near −70 mV): a drift slower than ~0.38 mV/s at ``dt`` 0.01 ms never moves ``V`` (τ = 100 s
    towards 8 mV above rest: float64 rises 0.0796 mV in 1 s, float32 0). Use float64 or a larger ``dt``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.ALIF(), jnp.full(2000, 30.0), dt=0.1)  # 200 ms, R·I = 30 mV
        >>> int(trace.spike_count)
        6

    ??? cite "Reference"
        Bellec, G. et al. (2018). Long short-term memory and learning-to-learn in networks of spiking
        neurons. NeurIPS. Wang, C. et al. (2024). A differentiable approach to multi-scale brain modeling.
        ICML workshop, arXiv:2406.19708.
    """

    State: ClassVar = ALIFState
    input_unit: ClassVar[str] = "mV"

    V_rest: Float[Array, "*n"] = param(-70.0, "mV", "resting potential")
    V_reset: Float[Array, "*n"] = param(-70.0, "mV", "reset potential (soft reset subtracts V_th − V_reset)")
    V_th: Float[Array, "*n"] = param(-50.0, "mV", "spike threshold")
    tau: Float[Array, "*n"] = param(20.0, "ms", "membrane time constant")
    tau_a: Float[Array, "*n"] = param(200.0, "ms", "adaptation time constant")
    beta: Float[Array, "*n"] = param(2.0, "mV", "adaptation added per spike (I_adp −= beta)")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        check_positive("ALIF", "tau", self.tau, "ms")
        check_positive("ALIF", "tau_a", self.tau_a, "ms")
        check_less("ALIF", "V_reset", self.V_reset, "V_th", self.V_th)

    def init_state(self, shape: int | tuple[int, ...] = ()) -> ALIFState:
        V = self._full(shape, self.V_rest)
        return ALIFState(V=V, I_adp=0.0 * V)

    def step(self, state: ALIFState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[ALIFState, Array]:
        dt = check_dt(dt)
        dV = (self.V_rest - state.V + current + state.I_adp) / self.tau
        V = exp_euler(state.V, dV, 1 / self.tau, dt)
        I_adp = exp_euler(state.I_adp, -state.I_adp / self.tau_a, 1 / self.tau_a, dt)
        spike = self.spike_fn(V - self.V_th)
        gate = self._reset_gate(spike)
        V = V - (self.V_th - self.V_reset) * gate
        I_adp = I_adp - self.beta * gate
        return ALIFState(V=V, I_adp=I_adp), spike
