"""Adaptive exponential integrate-and-fire neuron of Brette & Gerstner (2005)."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less, check_positive
from .._integrate import exp_euler
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron, compressed_overshoot, jump


def _max_exponent(dtype) -> float:
    """The largest exponent whose ``exp`` leaves the step ~10¹⁰ of headroom below ``dtype``'s overflow,
    or, for a dtype too narrow for that (float16: overflow at 6.6·10⁴), the square root of the overflow."""
    log_max = float(np.log(jnp.finfo(dtype).max))
    return max(log_max - 23.0, log_max / 2)


class AdExState(NamedTuple):
    V: Array  # membrane potential, mV
    w: Array  # adaptation current, pA


class AdEx(AbstractSpikingNeuron):
    r"""Adaptive exponential integrate-and-fire neuron.

    ``C dV/dt = −g_L(V − E_L) + g_L·Δ_T·exp((V − V_T)/Δ_T) − w + I`` and
    ``τ_w dw/dt = a(V − E_L) − w``. When ``V ≥ V_peak``: ``V ← V_reset``, ``w ← w + b``. The exponential
    is evaluated at ``min(V, V_peak)``: past the peak the spike is already detected and reset, so the cut
    changes no trajectory while keeping the step finite. With a steep slope (small ``Δ_T``, e.g. < 0.6 mV in
    float32 with the default ``V_T`` and ``V_peak``) even ``(V_peak − V_T)/Δ_T`` overflows ``exp``, so the
    exponent is also capped ~10¹⁰ below the dtype's overflow (float16: at its square root): V then jumps far
    past ``V_peak`` in that step and is reset, as the uncapped model would be, and the values and gradients
    stay finite. That overshoot (~10⁶ mV at the default Δ_T of 2 mV and 1 nA, far more at smaller Δ_T:
    ~10¹⁴ mV at 1 mV, ~10²⁶ mV in float32 and up to 10⁹² mV in float64 at 0.1–0.5 mV) would put the
    surrogate spike where its pseudo-derivative is ~0, so the spike is taken of the overshoot divided by the
    step's rise (``compressed_overshoot`` in ``zoo.neurons._base``): the same spikes, with a gradient.
    Defaults are Brette & Gerstner's (2005) fit to a cortical pyramidal cell (tonic firing with adaptation).

    Units: V mV, C pF, g_L and a nS, w, b and I pA, times ms.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.AdEx(), jnp.full(5000, 1000.0), dt=0.1)  # 500 ms at 1 nA
        >>> int(trace.spike_count)
        17

    ??? cite "Reference"
        Brette, R. & Gerstner, W. (2005). Adaptive exponential integrate-and-fire model as an effective
        description of neuronal activity. J. Neurophysiol. 94, 3637–3642.
    """

    State: ClassVar = AdExState
    input_unit: ClassVar[str] = "pA"

    C: Float[Array, "*n"] = param(281.0, "pF", "membrane capacitance")
    g_L: Float[Array, "*n"] = param(30.0, "nS", "leak conductance")
    E_L: Float[Array, "*n"] = param(-70.6, "mV", "leak reversal potential")
    V_T: Float[Array, "*n"] = param(-50.4, "mV", "threshold of the exponential term")
    delta_T: Float[Array, "*n"] = param(2.0, "mV", "slope factor")
    a: Float[Array, "*n"] = param(4.0, "nS", "subthreshold adaptation")
    b: Float[Array, "*n"] = param(80.5, "pA", "spike-triggered adaptation")
    tau_w: Float[Array, "*n"] = param(144.0, "ms", "adaptation time constant")
    V_reset: Float[Array, "*n"] = param(-70.6, "mV", "reset potential")
    V_peak: Float[Array, "*n"] = param(0.0, "mV", "spike cut-off")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        for name, unit in (("C", "pF"), ("g_L", "nS"), ("delta_T", "mV"), ("tau_w", "ms")):
            check_positive("AdEx", name, getattr(self, name), unit)
        check_less("AdEx", "V_reset", self.V_reset, "V_peak", self.V_peak)
        check_less("AdEx", "V_T", self.V_T, "V_peak", self.V_peak)

    def init_state(self, shape: int | tuple[int, ...] = ()) -> AdExState:
        V = self._full(shape, self.E_L)
        return AdExState(V=V, w=0.0 * V)

    def step(self, state: AdExState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[AdExState, Array]:
        dt = check_dt(dt)
        V, w = state
        exponent = (jnp.minimum(V, self.V_peak) - self.V_T) / self.delta_T
        spike_drive = self.g_L * self.delta_T * jnp.exp(jnp.minimum(exponent, _max_exponent(exponent.dtype)))
        dV = (-self.g_L * (V - self.E_L) + spike_drive - w + current) / self.C
        dw = (self.a * (V - self.E_L) - w) / self.tau_w
        V_start, V = V, exp_euler(V, dV, self.g_L / self.C, dt)
        w = exp_euler(w, dw, 1 / self.tau_w, dt)
        spike = self.spike_fn(compressed_overshoot(V_start, V, self.V_peak))
        gate = self._reset_gate(spike)
        V = jump(V, self.V_reset, gate)
        w = w + self.b * gate
        return AdExState(V=V, w=w), spike
