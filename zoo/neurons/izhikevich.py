"""Izhikevich's (2003) simple spiking model with its named firing-pattern presets."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_less
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._base import AbstractSpikingNeuron, compressed_overshoot, jump


class IzhikevichState(NamedTuple):
    V: Array  # membrane potential, mV
    u: Array  # recovery variable, dimensionless (mV/ms scale)


class Izhikevich(AbstractSpikingNeuron):
    r"""Izhikevich's simple model: ``dV/dt = 0.04V² + 5V + 140 − u + I``, ``du/dt = a(bV − u)``.

    When ``V ≥ V_peak`` (30 mV): ``V ← c``, ``u ← u + d``. The model is written dimensionless: V in mV,
    t in ms, and I in the model's own units (the paper uses I ≈ 10 for tonic firing). Integrated with
    forward Euler (the polynomial has no useful linear part); use dt ≤ 0.1 ms. In the step that crosses
    ``V_peak`` V overshoots it by up to ~30 mV (at dt = 0.1 ms), where the surrogate's pseudo-derivative is
    ~0, so the spike is taken of the overshoot divided by the step's rise
    (``compressed_overshoot`` in ``zoo.neurons._base``): the same spikes, with a gradient.

    Presets: `regular_spiking` (the default), `intrinsically_bursting`, `chattering`, `fast_spiking`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.Izhikevich.fast_spiking(), jnp.full(5000, 10.0), dt=0.1)
        >>> int(trace.spike_count) > 40
        True

    ??? cite "Reference"
        Izhikevich, E. M. (2003). Simple model of spiking neurons. IEEE Trans. Neural Netw. 14, 1569–1572.
    """

    State: ClassVar = IzhikevichState
    input_unit: ClassVar[str] = "1 (dimensionless)"

    a: Float[Array, "*n"] = param(0.02, "1/ms", "recovery rate")
    b: Float[Array, "*n"] = param(0.2, "1", "sensitivity of u to V")
    c: Float[Array, "*n"] = param(-65.0, "mV", "reset potential")
    d: Float[Array, "*n"] = param(8.0, "1", "u added at a spike")
    V_peak: Float[Array, "*n"] = param(30.0, "mV", "spike cut-off")
    spike_fn: AbstractSurrogate = Sigmoid()
    detach_reset: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        check_less("Izhikevich", "c", self.c, "V_peak", self.V_peak)

    @classmethod
    def regular_spiking(cls, **overrides) -> Izhikevich:
        """RS cortical pyramidal cell: tonic spiking with adaptation (a .02, b .2, c −65, d 8)."""
        return cls(**(dict(a=0.02, b=0.2, c=-65.0, d=8.0) | overrides))

    @classmethod
    def intrinsically_bursting(cls, **overrides) -> Izhikevich:
        """IB cell: an initial burst, then tonic spikes (a .02, b .2, c −55, d 4)."""
        return cls(**(dict(a=0.02, b=0.2, c=-55.0, d=4.0) | overrides))

    @classmethod
    def chattering(cls, **overrides) -> Izhikevich:
        """CH cell: repetitive bursts of closely spaced spikes (a .02, b .2, c −50, d 2)."""
        return cls(**(dict(a=0.02, b=0.2, c=-50.0, d=2.0) | overrides))

    @classmethod
    def fast_spiking(cls, **overrides) -> Izhikevich:
        """FS interneuron: high-frequency tonic spiking without adaptation (a .1, b .2, c −65, d 2)."""
        return cls(**(dict(a=0.1, b=0.2, c=-65.0, d=2.0) | overrides))

    def init_state(self, shape: int | tuple[int, ...] = ()) -> IzhikevichState:
        """The resting state: the lower fixed point at zero input, ``V = (b − 5 − √D)/0.08`` with
        ``D = (5 − b)² − 22.4`` (−70 mV for b = 0.2), ``u = bV``, where it is stable and below ``V_peak``;
        otherwise V = c (and u = bV). Its Jacobian ``[[0.08V + 5, −1], [ab, −a]]`` has trace
        ``b − √D − a`` and determinant ``a·√D`` there, so it is stable when ``D > 0``, ``a > 0`` and
        ``b − √D < a``. There is no rest for b > 5 − √22.4 ≈ 0.267 (the cell fires tonically at zero
        input), nor where the fixed point is unstable (b = 0.265 at a = 0.02) or above ``V_peak``
        (b = 10)."""
        discriminant = (5 - self.b) ** 2 - 4 * 0.04 * 140
        root = jnp.sqrt(jnp.where(discriminant > 0, discriminant, 1.0))
        rest = (self.b - 5 - root) / 0.08
        stable = (discriminant > 0) & (self.a > 0) & (self.b - root < self.a) & (rest < self.V_peak)
        V = self._full(shape, jnp.where(stable, rest, self.c))
        return IzhikevichState(V=V, u=self.b * V)

    def step(
        self, state: IzhikevichState, current: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[IzhikevichState, Array]:
        dt = check_dt(dt)
        V, u = state
        V_new = V + dt * (0.04 * V * V + 5 * V + 140 - u + current)
        u = u + dt * self.a * (self.b * V - u)
        spike = self.spike_fn(compressed_overshoot(V, V_new, self.V_peak))
        gate = self._reset_gate(spike)
        V_new = jump(V_new, self.c, gate)
        u = u + self.d * gate
        return IzhikevichState(V=V_new, u=u), spike
