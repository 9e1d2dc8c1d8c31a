"""The classic Hodgkin–Huxley (1952) squid giant axon model."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._integrate import exprel
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._hh_base import AbstractHH, GateRates, HHState


class HH(AbstractHH):
    r"""Hodgkin–Huxley squid axon, in the modern convention (rest at −65 mV, 6.3 °C rates).

    ``α_m = 1/exprel(−(V+40)/10)``, ``β_m = 4·e^{−(V+65)/18}``, ``α_h = 0.07·e^{−(V+65)/20}``,
    ``β_h = 1/(1 + e^{−(V+35)/10})``, ``α_n = 0.1/exprel(−(V+55)/10)``, ``β_n = 0.125·e^{−(V+65)/80}``
    (1/ms), where ``exprel(x) = (eˣ − 1)/x`` keeps the value and gradient finite at the removable
    singularities V = −40 and −55 mV.

    Units per membrane area: C µF/cm², conductances mS/cm², I µA/cm² (µA/µF = mV/ms), V mV.

    Time step: `step` (exponential Euler) is first order in ``dt`` and nothing warns when ``dt`` is too
    coarse. At 10 µA/cm² the first inter-spike interval is 14.9 ms (`zoo.solve`), 15.0 ms at dt = 0.01,
    15.3 ms at 0.05 and 15.7 ms at 0.1; at dt = 0.5 one spike in 100 ms is lost and at dt = 1 only 1 of 7
    is left. Use dt ≤ 0.025 ms when spike times matter, and `zoo.solve` for a reference.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.HH(), jnp.full(10_000, 10.0), dt=0.01)  # 100 ms at 10 µA/cm²
        >>> int(trace.spike_count)
        7

    ??? cite "Reference"
        Hodgkin, A. L. & Huxley, A. F. (1952). A quantitative description of membrane current and its
        application to conduction and excitation in nerve. J. Physiol. 117, 500–544.
    """

    input_unit: ClassVar[str] = "µA/cm²"

    C: Float[Array, "*n"] = param(1.0, "µF/cm²", "membrane capacitance")
    g_Na: Float[Array, "*n"] = param(120.0, "mS/cm²", "maximal Na conductance")
    g_K: Float[Array, "*n"] = param(36.0, "mS/cm²", "maximal K conductance")
    g_L: Float[Array, "*n"] = param(0.3, "mS/cm²", "leak conductance")
    E_Na: Float[Array, "*n"] = param(50.0, "mV", "Na reversal potential")
    E_K: Float[Array, "*n"] = param(-77.0, "mV", "K reversal potential")
    E_L: Float[Array, "*n"] = param(-54.387, "mV", "leak reversal potential")
    V_init: Float[Array, "*n"] = param(-65.0, "mV", "initial potential (gates start at steady state)")
    spike_threshold: Float[Array, "*n"] = param(0.0, "mV", "upward crossing that counts as a spike")
    spike_fn: AbstractSurrogate = Sigmoid()

    def rates(self, V: Array) -> GateRates:
        return GateRates(
            alpha_m=1.0 / exprel(-(V + 40.0) / 10.0),
            beta_m=4.0 * jnp.exp(-(V + 65.0) / 18.0),
            alpha_h=0.07 * jnp.exp(-(V + 65.0) / 20.0),
            beta_h=1.0 / (1.0 + jnp.exp(-(V + 35.0) / 10.0)),
            alpha_n=0.1 / exprel(-(V + 55.0) / 10.0),
            beta_n=0.125 * jnp.exp(-(V + 65.0) / 80.0),
        )

    def init_state(self, shape: int | tuple[int, ...] = ()) -> HHState:
        V = self._full(shape, self.V_init)
        m, h, n = self._steady_gates(V)
        return HHState(V=V, m=m, h=h, n=n)
