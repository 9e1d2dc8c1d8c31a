"""Leaky integrate-and-fire neuron with an absolute refractory period."""

from __future__ import annotations

import warnings
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less, check_nonnegative, check_positive
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron, jump


def _refractory_steps(t_ref, dt, xp=jnp) -> Array:
    """``t_ref/dt`` to the nearest whole number of steps, halves up (``floor(t_ref/dt + 1/2)``, as delays
    round): ``t_ref/dt`` may fall short of a half by 8 ε of its float type (``0.35/0.1`` is 3.4999… in
    float64 and float32 alike), so both dtypes hold the same number of steps. ``xp``: jax.numpy, or NumPy
    for concrete values at trace time."""
    ratio = xp.asarray(t_ref / dt)
    return xp.floor(ratio * (1 + 8 * xp.finfo(ratio.dtype).eps) + 0.5)


def _warn_if_refractory_lost(t_ref, dt) -> None:
    if isinstance(t_ref, jax.core.Tracer) or isinstance(dt, jax.core.Tracer):
        return
    t_ref = np.asarray(t_ref)
    if np.any((t_ref > 0) & (_refractory_steps(t_ref, float(dt), np) == 0)):
        warnings.warn(
            f"LIF: dt = {float(dt)} ms is more than twice t_ref (min {float(t_ref[t_ref > 0].min())} ms), so "
            "the refractory period rounds to 0 steps and is ignored. Use dt <= 2·t_ref or t_ref=0.",
            stacklevel=2,
        )


class LIFState(NamedTuple):
    V: Array  # membrane potential, mV
    refractory: Array  # refractory time left, ms (a whole number of steps)


class LIF(AbstractSpikingNeuron):
    r"""Leaky integrate-and-fire neuron: ``C dV/dt = −g_L (V − V_rest) + I``.

    Between spikes the membrane relaxes to ``V_rest + I/g_L`` with ``τ = C/g_L``; ``step`` integrates this
    exactly for input held constant over the step (exponential Euler), so the subthreshold trace equals the
    closed form at every sample. When ``V ≥ V_th`` the neuron spikes, ``V`` is reset to ``V_reset`` and held
    there for ``t_ref`` ms, rounded to the nearest whole number of steps with halves up, as delays round:
    ``floor(t_ref/dt + 1/2)`` steps in float32 and float64 alike (``t_ref`` 0.25 ms at ``dt`` 0.1 holds 3),
    which is 0 (no refractory period at all) once ``dt > 2·t_ref``. `step` warns then (when ``dt`` and
    ``t_ref`` are concrete, at trace time, so a jitted scan pays nothing). The state's ``refractory`` is the
    time left, ms, a whole number of steps.

    Units: V mV, C pF, g_L nS, I pA, times ms (pA/pF = mV/ms).

    Precision: ``V`` is held in absolute mV, so in float32 each step's change is rounded to a multiple of the
    float spacing at ``|V|`` (7.6e-6 mV between 64 and 128 mV). A change below half of that (3.8e-6 mV) is
    lost: a drift slower than ~0.38 mV/s at ``dt`` 0.01 ms (0.038 mV/s at 0.1 ms) never moves ``V``, and a
    change of a few spacings a step is off by up to half a spacing (τ = 100 s towards 8 mV above rest, for
    1 s: float64 rises 0.0796 mV; float32 0 at ``dt`` 0.01 ms and 0.0763 mV at 0.1 ms). Use float64
    (``zoo.astype(model, jnp.float64)``) or a larger ``dt`` for such slow integrators.

    Presets: `LIF.coba` and `LIF.cuba` give the Brette et al. (2007) benchmark neurons.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.LIF(), jnp.full(1000, 500.0), dt=0.1)  # 100 ms at 500 pA
        >>> int(trace.spike_count)
        6

    ??? cite "Reference"
        Brette, R. et al. (2007). Simulation of networks of spiking neurons: a review of tools and
        strategies. J. Comput. Neurosci. 23, 349–398.
    """

    State: ClassVar = LIFState
    input_unit: ClassVar[str] = "pA"

    V_rest: Float[Array, "*n"] = param(-65.0, "mV", "resting potential")
    V_reset: Float[Array, "*n"] = param(-65.0, "mV", "reset potential")
    V_th: Float[Array, "*n"] = param(-50.0, "mV", "spike threshold")
    C: Float[Array, "*n"] = param(250.0, "pF", "membrane capacitance")
    g_L: Float[Array, "*n"] = param(25.0, "nS", "leak conductance")
    t_ref: Float[Array, "*n"] = param(2.0, "ms", "absolute refractory period")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        check_positive("LIF", "C", self.C, "pF")
        check_positive("LIF", "g_L", self.g_L, "nS")
        check_nonnegative("LIF", "t_ref", self.t_ref, "ms")
        check_less("LIF", "V_reset", self.V_reset, "V_th", self.V_th)

    @classmethod
    def coba(cls, **overrides) -> LIF:
        """Brette et al. (2007) COBA neuron: τ 20 ms (200 pF, 10 nS), rest −60, θ −50, reset −60, 5 ms."""
        preset = dict(V_rest=-60.0, V_reset=-60.0, V_th=-50.0, C=200.0, g_L=10.0, t_ref=5.0)
        return cls(**(preset | overrides))

    @classmethod
    def cuba(cls, **overrides) -> LIF:
        """Brette et al. (2007) CUBA neuron: τ 20 ms (200 pF, 10 nS), rest −49, θ −50, reset −60, 5 ms."""
        preset = dict(V_rest=-49.0, V_reset=-60.0, V_th=-50.0, C=200.0, g_L=10.0, t_ref=5.0)
        return cls(**(preset | overrides))

    @property
    def tau(self) -> Float[Array, "*n"]:
        """Membrane time constant C/g_L, ms."""
        return self.C / self.g_L

    def init_state(self, shape: int | tuple[int, ...] = ()) -> LIFState:
        V = self._full(shape, self.V_rest)
        return LIFState(V=V, refractory=jnp.zeros_like(V))

    def step(self, state: LIFState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[LIFState, Array]:
        dt = check_dt(dt)
        _warn_if_refractory_lost(self.t_ref, dt)
        V_inf = self.V_rest + current / self.g_L
        # The rise written as a fraction of the way to V_inf: V_inf + (V − V_inf)·e^{−dt/τ} cancels in float32
        # for long τ (at τ = 100 s, dt = 0.01 ms it lost 4 mV of an 8 mV rise).
        V_free = state.V + (V_inf - state.V) * -jnp.expm1(-dt / self.tau)
        steps_left = jnp.floor(state.refractory / dt + 0.5)  # re-rounded each step, so no drift builds up
        V = jnp.where(steps_left > 0, self.V_reset, V_free)
        spike = self.spike_fn(V - self.V_th)
        V = jump(V, self.V_reset, self._reset_gate(spike))
        steps_left = jnp.where(spike > 0, _refractory_steps(self.t_ref, dt), jnp.maximum(steps_left - 1, 0))
        return LIFState(V=V, refractory=(steps_left * dt).astype(V.dtype)), spike
