"""What the single-compartment Hodgkin–Huxley models share: Na/K/leak currents, gating, integration."""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_nonnegative, check_positive
from .._integrate import exp_euler
from ..surrogate import AbstractSurrogate
from ._base import AbstractContinuousNeuron


class HHState(NamedTuple):
    V: Array  # membrane potential, mV
    m: Array  # Na activation gate, 1
    h: Array  # Na inactivation gate, 1
    n: Array  # K activation gate, 1


class GateRates(NamedTuple):
    alpha_m: Array  # 1/ms
    beta_m: Array
    alpha_h: Array
    beta_h: Array
    alpha_n: Array
    beta_n: Array


class AbstractHH(AbstractContinuousNeuron):
    """``C dV/dt = g_Na m³h (E_Na − V) + g_K n⁴ (E_K − V) + g_L (E_L − V) + I`` with gates
    ``dx/dt = α_x(V)(1 − x) − β_x(V) x``. Subclasses give the parameters and `rates`.

    `step` is exponential Euler (each gate and V advance exactly with the others frozen over the step);
    `vector_field` serves Diffrax. A spike is an upward crossing of ``spike_threshold``.
    """

    C: eqx.AbstractVar[Array]
    g_Na: eqx.AbstractVar[Array]
    g_K: eqx.AbstractVar[Array]
    g_L: eqx.AbstractVar[Array]
    E_Na: eqx.AbstractVar[Array]
    E_K: eqx.AbstractVar[Array]
    E_L: eqx.AbstractVar[Array]
    spike_fn: eqx.AbstractVar[AbstractSurrogate]

    State = HHState

    @abc.abstractmethod
    def rates(self, V: Array) -> GateRates:
        """Opening and closing rates of the gates at V (mV), 1/ms."""

    def __check_init__(self) -> None:
        name = type(self).__name__
        check_positive(name, "C", self.C)
        for field in ("g_Na", "g_K", "g_L"):
            check_nonnegative(name, field, getattr(self, field))

    def _steady_gates(self, V: Array) -> tuple[Array, Array, Array]:
        r = self.rates(V)
        return (
            r.alpha_m / (r.alpha_m + r.beta_m),
            r.alpha_h / (r.alpha_h + r.beta_h),
            r.alpha_n / (r.alpha_n + r.beta_n),
        )

    def _conductances(self, y: HHState) -> tuple[Array, Array]:
        g_Na = self.g_Na * y.m**3 * y.h
        g_K = self.g_K * y.n**4
        return g_Na, g_K

    def vector_field(self, t: float, y: HHState, current: Float[ArrayLike, "*n"]) -> HHState:
        g_Na, g_K = self._conductances(y)
        ionic = g_Na * (self.E_Na - y.V) + g_K * (self.E_K - y.V) + self.g_L * (self.E_L - y.V)
        r = self.rates(y.V)
        return HHState(
            V=(ionic + current) / self.C,
            m=r.alpha_m * (1 - y.m) - r.beta_m * y.m,
            h=r.alpha_h * (1 - y.h) - r.beta_h * y.h,
            n=r.alpha_n * (1 - y.n) - r.beta_n * y.n,
        )

    def step(self, state: HHState, current: Float[ArrayLike, "*n"], dt: float) -> tuple[HHState, Array]:
        dt = check_dt(dt)
        g_Na, g_K = self._conductances(state)
        derivative = self.vector_field(0.0, state, current)
        r = self.rates(state.V)
        g_total = g_Na + g_K + self.g_L
        V = exp_euler(state.V, derivative.V, g_total / self.C, dt)
        m = exp_euler(state.m, derivative.m, r.alpha_m + r.beta_m, dt)
        h = exp_euler(state.h, derivative.h, r.alpha_h + r.beta_h, dt)
        n = exp_euler(state.n, derivative.n, r.alpha_n + r.beta_n, dt)
        was_below = jax.lax.stop_gradient(state.V < self.spike_threshold).astype(V.dtype)
        spike = self.spike_fn(V - self.spike_threshold) * was_below
        return HHState(V=V, m=m, h=h, n=n), spike
