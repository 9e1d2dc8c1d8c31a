"""Tsodyks–Markram short-term plasticity: facilitation and depression of transmitter release."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_dt, check_nonnegative, check_positive, offending
from .._param import param
from ._base import AbstractSynapticDynamics, as_spikes


class STPState(NamedTuple):
    u: Array  # utilisation: fraction of the available resources the next spike releases (before its jump); 1
    x: Array  # fraction of synaptic resources available; 1


def _at_most_one_per_step(spikes: ArrayLike) -> Array:
    """``spikes`` as an array if they lie in [0, 1]; else ``ValueError``, or ``eqx.error_if`` when traced."""
    spikes = jnp.asarray(spikes)
    if spikes.dtype == jnp.bool_:
        return spikes
    message = (
        "STP: `spikes` must lie in [0, 1] (one spike per step at most: bool events, or surrogate spikes); "
        "a count above 1 means several spikes in one step, whose release depends on the time between "
        "them. Reduce dt until each step holds one spike at most."
    )
    if isinstance(spikes, jax.core.Tracer):
        return eqx.error_if(spikes, jnp.any((spikes < 0) | (spikes > 1)), message)
    values = np.asarray(spikes)
    outside = values[(values < 0) | (values > 1)]
    if outside.size:
        raise ValueError(f"{message} Got {outside[:4]}.")
    return spikes


class STP(AbstractSynapticDynamics):
    r"""Tsodyks–Markram short-term plasticity: the release of each spike depends on the recent spikes.

    ``du/dt = −u/τ_f``, ``dx/dt = (1 − x)/τ_d``; at a spike ``u⁺ = u + U(1 − u)``, the release is
    ``r = u⁺·x`` and ``x ← x − r``. So the first spike after a long pause releases ``U``, ``u`` facilitates
    over ``τ_f`` and the resources ``x`` recover over ``τ_d``. Under periodic spikes every ``Δ`` ms the
    release settles at ``u_ss·x_ss`` with ``u_ss = U/(1 − (1 − U)e^{−Δ/τ_f})`` and
    ``x_ss = (1 − e^{−Δ/τ_d})/(1 − (1 − u_ss)e^{−Δ/τ_d})``.

    STP is not a synapse on its own: ``step(state, spikes, dt)`` returns the released efficacy ``r·s``,
    which multiplies the spikes fed to a downstream synapse (``syn.step(syn_state, stp_out, dt)``). It has
    no ``current`` or ``mode``. The relaxation is exact for any ``dt``; spikes arrive at the end of the step.
    A float spike ``s`` in [0, 1] scales the jump, the depletion and the output (``u ← u + s·U(1 − u)``,
    ``x ← x − s·u⁺x``, output ``s·u⁺x`` with ``u⁺`` that of a full spike), so the output is linear in ``s``
    and its gradient flows at ``s = 0`` too. ``tau_f = 0`` turns facilitation off (``u⁺ = U`` at each spike).

    One synapse takes at most one spike per step: spikes outside [0, 1] (an integer count of 2, a weighted
    sum) raise a ``ValueError``, or an error inside ``jit``. Several spikes in one step mean that ``dt`` is
    longer than the interval between them, and the recovery of ``x`` and the decay of ``u`` in that interval
    set the release of each; reduce ``dt`` until every step holds one spike at most.

    Units: ``U`` 1, ``tau_f`` ms, ``tau_d`` ms. Defaults are BrainPy's (facilitation-dominated);
    `STP.depressing` and `STP.facilitating` give the Tsodyks, Uziel & Markram (2000) synapses.

    Examples:
        >>> import jax.numpy as jnp
        >>> from diffbrain.zoo import synapses
        >>> stp = synapses.STP.depressing()
        >>> state = stp.init_state()
        >>> releases = []
        >>> for _ in range(4):  # a 50 Hz train: one spike, then 19 silent 1 ms steps
        ...     state, r = stp.step(state, True, dt=1.0)
        ...     releases.append(round(float(r), 3))
        ...     for _ in range(19):
        ...         state, _ = stp.step(state, False, dt=1.0)
        >>> releases
        [0.5, 0.256, 0.137, 0.079]

    ??? cite "Reference"
        Tsodyks, M., Pawelzik, K. & Markram, H. (1998). Neural networks with dynamic synapses.
        Neural Comput. 10, 821–835.

        Tsodyks, M., Uziel, A. & Markram, H. (2000). Synchrony generation in recurrent networks with
        frequency-dependent synapses. J. Neurosci. 20, RC50.
    """

    State: ClassVar = STPState

    U: Float[Array, "*n"] = param(0.15, "1", "utilisation increment per spike (release of a rested synapse)")
    tau_f: Float[Array, "*n"] = param(1500.0, "ms", "facilitation time constant (0: no facilitation)")
    tau_d: Float[Array, "*n"] = param(200.0, "ms", "recovery time constant of the resources (depression)")

    def __check_init__(self):
        check_positive("STP", "U", self.U)
        U = None if isinstance(self.U, jax.core.Tracer) else np.asarray(self.U)
        if U is not None and np.any(U > 1):
            raise ValueError(
                "STP: `U` is the fraction of the resources a rested synapse releases, so it must lie in "
                f"(0, 1] (1: full release), got U={offending(U, U <= 1)}."
            )
        check_nonnegative("STP", "tau_f", self.tau_f, "ms")
        check_positive("STP", "tau_d", self.tau_d, "ms")
        self.shape  # noqa: B018 - raises if the parameters' shapes do not broadcast

    @classmethod
    def depressing(cls, **overrides) -> STP:
        """Tsodyks, Uziel & Markram (2000) excitatory-to-excitatory synapse: U 0.5, τ_d 800 ms, no τ_f."""
        return cls(**(dict(U=0.5, tau_d=800.0, tau_f=0.0) | overrides))

    @classmethod
    def facilitating(cls, **overrides) -> STP:
        """Tsodyks, Uziel & Markram (2000) excitatory-to-inhibitory synapse: U 0.04, τ_d 100, τ_f 1000 ms."""
        return cls(**(dict(U=0.04, tau_d=100.0, tau_f=1000.0) | overrides))

    def init_state(self, shape: int | tuple[int, ...] = ()) -> STPState:
        zeros = self._zeros(shape)
        return STPState(u=zeros, x=zeros + 1.0)

    def step(
        self, state: STPState, spikes: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[STPState, Float[Array, "*n"]]:
        dt = check_dt(dt)
        spikes = as_spikes(_at_most_one_per_step(spikes), state.u)
        facilitates = self.tau_f > 0
        # The double `where` keeps the gradient finite at tau_f = 0 (no facilitation: u forgets at once).
        u_decay = jnp.where(facilitates, jnp.exp(-dt / jnp.where(facilitates, self.tau_f, 1.0)), 0.0)
        u = state.u * u_decay
        x = 1.0 - (1.0 - state.x) * jnp.exp(-dt / self.tau_d)
        u_jump = u + self.U * (1.0 - u)  # u⁺ of a full spike now
        release = u_jump * x
        u = u + spikes * (u_jump - u)
        return STPState(u=u, x=x - spikes * release), spikes * release
