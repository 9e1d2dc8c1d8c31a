"""The synapse contract shared by every model of the zoo, and the transmitter-pulse kinetics of AMPA/GABAa."""

import abc
import dataclasses
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_shape, check_broadcastable, check_dt, check_finite, check_nonnegative, check_positive

MODES = ("coba", "cuba")


class AbstractSynapticDynamics(eqx.Module):
    """Anything that turns presynaptic spikes into a per-step output through its own state.

    Subclasses are final and declare ``State`` (a ``NamedTuple`` class), ``init_state(shape)`` and
    ``step(state, spikes, dt) -> (state, output)``. ``spikes`` are the presynaptic events that arrive at the
    end of the step: bool events, or floats (surrogate spikes) through which gradients flow. `Expon`,
    `DualExpon`, `Alpha` and `NMDA` add a float spike ``s`` to their state and `STP` (which takes ``s`` in
    [0, 1]) scales its jump by it, so at every step, silent ones too, ``d(output)/ds`` is the response to a
    small spike and not zero. `AMPA` and `GABAa` are like them only while no transmitter pulse is running:
    during a pulse, a spike opens a pulse of ``s·T_dur`` only where that outlasts the time left, so a small
    spike changes nothing and ``d/ds`` is exactly 0 (the true derivative, although a full spike would
    restart the pulse).

    `AbstractSynapse` adds the postsynaptic current; `STP` is the one model that only rescales spikes.
    """

    State: ClassVar[type[NamedTuple]]

    @abc.abstractmethod
    def init_state(self, shape: int | tuple[int, ...] = ()) -> NamedTuple:
        """The resting state for a population of ``shape`` (broadcast with the parameters' shape)."""

    @abc.abstractmethod
    def step(
        self, state: NamedTuple, spikes: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[NamedTuple, Float[Array, "*n"]]:
        """Advance ``state`` by ``dt`` ms, with ``spikes`` arriving at the step's end; return (state, out)."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The population shape implied by heterogeneous (array) parameters; ``()`` if all are scalars."""
        return check_broadcastable(type(self).__name__, self._parameters())

    def _parameters(self) -> dict[str, Array]:
        # The `param` fields, read without `describe` (which converts to Python numbers) so it works in `jit`.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if "unit" in f.metadata}

    def _zeros(self, shape: int | tuple[int, ...]) -> Array:
        """Zeros of the population shape in the parameters' dtype (weakly typed when they all are)."""
        zero = sum(jnp.zeros_like(value) for value in self._parameters().values())
        return jnp.broadcast_to(zero, jnp.broadcast_shapes(as_shape(shape), self.shape))


def as_spikes(spikes: ArrayLike, like: Array) -> Array:
    """Bool or integer events (counts) as floats of ``like``'s dtype; float (surrogate) spikes unchanged."""
    spikes = jnp.asarray(spikes)
    if jnp.issubdtype(spikes.dtype, jnp.inexact):
        return spikes
    return spikes.astype(like.dtype)


class AbstractSynapse(AbstractSynapticDynamics):
    """A synapse: presynaptic spikes in, a dimensionless open fraction ``g`` out, and its current.

    ``step(state, spikes, dt) -> (state, g)``; then ``current(g, V)`` is the postsynaptic current in pA:

    * ``mode="coba"`` (conductance-based): ``I = g_max·g·(E − V)``, with ``g_max`` in nS, ``E`` and ``V``
      in mV. The sign is that of an injected current: an excitatory synapse (E above V) depolarises.
    * ``mode="cuba"`` (current-based): ``I = g_max·g``, with ``g_max`` in pA (negative for inhibition).

    Every final subclass holds the fields ``g_max``, ``E`` and the static ``mode``. `NMDA` extends
    ``current`` to pass ``g`` through its voltage-dependent Mg²⁺ block first.
    """

    g_max: AbstractVar[Float[Array, "*n"]]
    E: AbstractVar[Float[Array, "*n"]]
    mode: AbstractVar[str]

    def __check_init__(self):
        owner = type(self).__name__
        if self.mode not in MODES:
            raise ValueError(f"{owner}: `mode` must be one of {MODES}, got {self.mode!r}.")
        if self.mode == "coba":
            check_nonnegative(owner, "g_max", self.g_max, "nS")
        else:
            check_finite(owner, "g_max", self.g_max)
        check_finite(owner, "E", self.E)
        self.shape  # noqa: B018 - raises if the parameters' shapes do not broadcast

    def current(self, g: Float[ArrayLike, "*n"], V: Float[ArrayLike, "*n"]) -> Float[Array, "*n"]:
        """The postsynaptic current in pA for open fraction ``g`` at membrane potential ``V`` (mV)."""
        if self.mode == "cuba":
            return self.g_max * g
        return self.g_max * g * (self.E - V)


class KineticState(NamedTuple):
    g: Array  # open fraction of the receptors, 1
    pulse: Array  # transmitter pulse time left, ms


class AbstractKineticSynapse(AbstractSynapse):
    r"""Destexhe et al. (1994) two-state receptor kinetics driven by a square transmitter pulse.

    ``dg/dt = α[T](1 − g) − βg``, where ``[T] = T_max`` for ``T_dur`` ms after each spike and 0 otherwise
    (a spike during a pulse restarts it). The state keeps the pulse time left; each step splits into the part
    with transmitter, where ``g`` relaxes exactly to ``αT_max/(αT_max + β)`` at rate ``αT_max + β``, and the
    part without, where it decays exactly at rate ``β`` — so any ``dt`` (dividing ``T_dur`` or not) reproduces
    the closed form at every step. A float spike ``s`` opens a pulse of ``s·T_dur`` (``s = 1``: the standard
    pulse) unless the running pulse has more time left; a count of several spikes in one step opens one
    standard pulse (each restarts it). With no pulse running, ``d/ds`` at ``s = 0`` is the
    response to a short pulse, so a silent step carries a gradient; during a pulse a small spike changes
    nothing and ``d/ds`` is exactly 0. A pulse that ends at a step's end (``dt`` divides ``T_dur``) ends
    there although counting it down by ``dt`` leaves a rounding residue, so a spike at that step has the
    silent steps' ``d/ds``; ``g`` has a kink in ``T_dur`` there, and ``d/dT_dur`` is the derivative from
    below (a shorter pulse). In float32 the countdown drifts by up to ``T_dur/dt`` half-ulps of ``T_dur``:
    a pulse of 10⁴ steps or more may end a step late (1,000 ms at ``dt`` 0.1 ms: ``g`` within 0.017 of the
    closed form; 10 ms at 0.001 ms ends on time, within 8e-5); ``g`` stays in ``[0, αT_max/(αT_max + β)]``
    from a state in it (one above it relaxes down to it, as in the closed form).
    """

    alpha: AbstractVar[Float[Array, "*n"]]
    beta: AbstractVar[Float[Array, "*n"]]
    T_max: AbstractVar[Float[Array, "*n"]]
    T_dur: AbstractVar[Float[Array, "*n"]]

    State: ClassVar = KineticState

    def __check_init__(self):
        owner = type(self).__name__
        check_positive(owner, "alpha", self.alpha, "1/(ms·mM)")
        check_positive(owner, "beta", self.beta, "1/ms")
        check_positive(owner, "T_max", self.T_max, "mM")
        check_positive(owner, "T_dur", self.T_dur, "ms")

    def init_state(self, shape: int | tuple[int, ...] = ()) -> KineticState:
        zeros = self._zeros(shape)
        return KineticState(g=zeros, pulse=zeros)

    def step(
        self, state: KineticState, spikes: Float[ArrayLike, "*n"], dt: float
    ) -> tuple[KineticState, Float[Array, "*n"]]:
        dt = check_dt(dt)
        spikes = as_spikes(spikes, state.g)
        bound = self.alpha * self.T_max
        rate_on = bound + self.beta
        # Counting the pulse down by dt rounds by up to half an ulp of T_dur a step, so a pulse that ends at
        # this step's end may show up to (T_dur/dt)/2 ulps more than dt: it ends here (left 0, so d/ds flows).
        # That bound is capped at half a step (in float32 it spans steps from T_dur/dt ≈ 10⁴: a pulse had
        # ended 6 steps early), and the transmitter time at the step (so g never grows outside the pulse),
        # its gradient still the pulse's (d/dT_dur from below).
        residue = jnp.finfo(state.pulse.dtype).eps * jnp.maximum(self.T_dur, dt) * (self.T_dur / dt / 2 + 2)
        ends = state.pulse <= dt + jnp.minimum(residue, dt / 2)
        overrun = jax.lax.stop_gradient(jnp.maximum(state.pulse - dt, 0.0))
        with_transmitter = jnp.where(ends, state.pulse - overrun, dt)
        g_inf = bound / rate_on
        # g + (g_inf − g)(1 − e^{−rate·t}), not g_inf + (g − g_inf)e^{−rate·t}: that rounded g to ulps of
        # g_inf even with no transmitter (t = 0), so float32 g froze near 1.6e-5. Capped at g_inf, which this
        # order overshoots by an ulp for some g < g_inf/2 once e^{−rate·t} rounds to 0 (rate·t ≳ 17 in
        # float32); by a where, not a minimum, so a g that lands on g_inf keeps its whole gradient. Only a
        # step that starts at or below g_inf is capped: one from above relaxes down to g_inf (or decays).
        g = state.g + (g_inf - state.g) * -jnp.expm1(-rate_on * with_transmitter)
        g = jnp.where((g > g_inf) & (state.g <= g_inf), g_inf, g)
        g = g * jnp.exp(-self.beta * (dt - with_transmitter))
        left = jnp.where(ends, 0.0, state.pulse - dt)
        opened = jnp.where(spikes > 1, 1, spikes) * self.T_dur  # k spikes in one step: one pulse, restarted
        pulse = jnp.where(opened >= left, opened, left)  # ties pick the spike, so d/ds flows at s = 0
        return KineticState(g=g, pulse=pulse), g
