"""The Traub–Miles Hodgkin–Huxley neuron of the paper's fitting experiment."""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Float

from .._integrate import exprel
from .._param import param
from ..surrogate import AbstractSurrogate, Sigmoid
from ._hh_base import AbstractHH, GateRates, HHState


class TraubHH(AbstractHH):
    r"""Traub–Miles Hodgkin–Huxley neuron with threshold shift ``V_T`` (all rates shift with it).

    ``α_m = 0.32·4/exprel((13 − V + V_T)/4)``, ``β_m = 0.28·5/exprel((V − V_T − 40)/5)``,
    ``α_h = 0.128·e^{(17 − V + V_T)/18}``, ``β_h = 4/(1 + e^{(40 − V + V_T)/5})``,
    ``α_n = 0.032·5/exprel((15 − V + V_T)/5)``, ``β_n = 0.5·e^{(10 − V + V_T)/40}`` (1/ms).
    The cell is 20,000 µm² with 1 µF/cm², so C = 0.2 nF. Defaults are the paper's ground truth
    (g_L, g_Na, g_K, V_T fitted to its HH traces); as there, V starts at −65 mV with all gates closed.

    Units: C nF, conductances µS, I nA (nA/nF = mV/ms), V mV.

    Time step: as for `HH`, `step` is first order and nothing warns when ``dt`` is too coarse. At 1 nA the
    first inter-spike interval is 8.86 ms (`zoo.solve`), 9.0 ms at dt = 0.01 and 10.0 ms at 0.1; at dt = 1,
    3 spikes are left of 6 in 50 ms. The later intervals are 9.04 ms at dt = 0.001, 9.09 at 0.005, 9.15 at
    0.01 and 9.3 at 0.025, and their errors add up from spike to spike: the sixth spike, at 49.6 ms, moves
    to 49.8 ms at dt = 0.005 and past 50 ms at 0.01. Use dt ≤ 0.005 ms when spike times matter (the
    command line's default), and `zoo.solve` for a reference.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain import zoo
        >>> trace = zoo.simulate(zoo.TraubHH(), jnp.full(2000, 1.0), dt=0.01)  # 20 ms at 1 nA
        >>> int(trace.spike_count)
        2

    ??? cite "Reference"
        Traub, R. D. & Miles, R. (1991). Neuronal Networks of the Hippocampus. Cambridge University Press.
        Wang, C. et al. (2024), arXiv:2406.19708 (the fitting problem and ground-truth parameters).
    """

    input_unit: ClassVar[str] = "nA"

    C: Float[Array, "*n"] = param(0.2, "nF", "membrane capacitance")
    g_Na: Float[Array, "*n"] = param(24.697737655778038, "µS", "maximal Na conductance")
    g_K: Float[Array, "*n"] = param(5.814895041093182, "µS", "maximal K conductance")
    g_L: Float[Array, "*n"] = param(0.008363657201143428, "µS", "leak conductance")
    E_Na: Float[Array, "*n"] = param(50.0, "mV", "Na reversal potential")
    E_K: Float[Array, "*n"] = param(-90.0, "mV", "K reversal potential")
    E_L: Float[Array, "*n"] = param(-65.0, "mV", "leak reversal potential")
    V_T: Float[Array, "*n"] = param(-55.31094455202257, "mV", "threshold shift of every rate")
    V_init: Float[Array, "*n"] = param(-65.0, "mV", "initial potential (gates start closed)")
    spike_threshold: Float[Array, "*n"] = param(0.0, "mV", "upward crossing that counts as a spike")
    spike_fn: AbstractSurrogate = Sigmoid()

    def rates(self, V: Array) -> GateRates:
        u = V - self.V_T
        return GateRates(
            alpha_m=0.32 * 4.0 / exprel((13.0 - u) / 4.0),
            beta_m=0.28 * 5.0 / exprel((u - 40.0) / 5.0),
            alpha_h=0.128 * jnp.exp((17.0 - u) / 18.0),
            beta_h=4.0 / (1.0 + jnp.exp((40.0 - u) / 5.0)),
            alpha_n=0.032 * 5.0 / exprel((15.0 - u) / 5.0),
            beta_n=0.5 * jnp.exp((10.0 - u) / 40.0),
        )

    def init_state(self, shape: int | tuple[int, ...] = ()) -> HHState:
        V = self._full(shape, self.V_init)
        closed = 0.0 * V
        return HHState(V=V, m=closed, h=closed, n=closed)
