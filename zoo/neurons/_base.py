"""The neuron contract shared by every model of the zoo."""

import abc
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, ArrayLike, Float

from .._checks import as_shape, check_broadcastable, check_finite
from .._param import parameters
from ..surrogate import AbstractSurrogate


class AbstractNeuron(eqx.Module):
    """A neuron model: parameters as fields, state as a separate PyTree, a pure `step`.

    Subclasses are final and declare:

    * ``State``: a ``NamedTuple`` class of the state variables (``V`` in mV always first);
    * ``input_unit``: the unit of the injected current (``"pA"``, ``"nA"``, ``"µA/cm²"``, or ``"mV"`` for
      models written dimensionless, where the input enters as ``R·I`` directly);
    * ``init_state(shape)`` and ``step(state, current, dt) -> (state, spike)``.

    Parameters may be scalars or arrays of one population shape (heterogeneous populations).
    """

    State: ClassVar[type[NamedTuple]]
    input_unit: ClassVar[str]

    @abc.abstractmethod
    def init_state(self, shape: int | tuple[int, ...] = ()) -> NamedTuple:
        """The resting state for a population of ``shape`` (an int or a tuple, broadcast with the
        parameters' shape)."""

    @abc.abstractmethod
    def step(
        self, state: NamedTuple, current: Float[ArrayLike, "..."], dt: float
    ) -> tuple[NamedTuple, Float[Array, "..."]]:
        """Advance ``state`` by ``dt`` ms under ``current`` (in `input_unit`); return (state, spike)."""

    def __check_init__(self):
        owner = type(self).__name__
        spike_fn = getattr(self, "spike_fn", None)
        if spike_fn is not None and not isinstance(spike_fn, AbstractSurrogate):
            raise TypeError(
                f"`spike_fn` of {owner} must be a surrogate Heaviside from zoo.surrogate (e.g. "
                f"zoo.surrogate.Sigmoid()), got {spike_fn!r}."
            )
        for name, value in parameters(self).items():
            check_finite(owner, name, value)
        check_broadcastable(owner, parameters(self))

    @property
    def shape(self) -> tuple[int, ...]:
        """The population shape implied by heterogeneous (array) parameters; ``()`` if all are scalars."""
        return check_broadcastable(type(self).__name__, parameters(self))

    def _full(self, shape: int | tuple[int, ...], value) -> Array:
        """``value`` broadcast to ``shape`` and the parameters' shape, or a ``ValueError`` naming both."""
        try:
            population = np.broadcast_shapes(as_shape(shape), self.shape)
        except ValueError:
            arrays = [f"`{name}`" for name, field in parameters(self).items() if np.ndim(field) > 0]
            raise ValueError(
                f"{type(self).__name__}.init_state: `shape` {as_shape(shape)} does not broadcast with the "
                f"parameters' shape {self.shape} (of {', '.join(arrays)}). Pass a `shape` that does, such as "
                f"{self.shape}, or leave it out."
            ) from None
        return jnp.broadcast_to(jnp.asarray(value), population)


class AbstractSpikingNeuron(AbstractNeuron):
    """A neuron that emits spikes through a surrogate Heaviside and resets after each one.

    ``spike_fn`` is the surrogate (forward: exact Heaviside of ``V − threshold``); ``detach_reset`` stops
    the gradient through the reset term, which keeps gradients bounded through many spikes (without it a
    GIF gradient was measured to reach 1e72).
    """

    spike_fn: AbstractVar[AbstractSurrogate]
    detach_reset: AbstractVar[bool]

    def __check_init__(self):
        if not isinstance(self.detach_reset, bool | np.bool_):
            raise ValueError(
                f"{type(self).__name__}: `detach_reset` must be True or False, got {self.detach_reset!r} "
                "(any other object, even 'False', would be read by its truth value). Pass a bool."
            )

    def _reset_gate(self, spike: Array) -> Array:
        return jax.lax.stop_gradient(spike) if self.detach_reset else spike


def compressed_overshoot(V_start: Array, V_end: Array, V_peak: Array, scale: float = 1.0) -> Array:
    """``V_end − V_peak`` (mV) for a surrogate spike of a model whose voltage runs away at a spike
    (AdEx, Izhikevich), divided by the step's rise in units of ``scale`` mV where it rose by more.

    In the step that crosses ``V_peak`` such a V overshoots it by tens of mV to ~10⁶ mV, where every
    surrogate's pseudo-derivative is ~0, so no gradient would flow through the spike. Divided by the rise,
    the overshoot is ``scale`` times the fraction of the step spent above ``V_peak`` (at most ``scale``):
    the same sign, so the same spikes, and a pseudo-derivative like a slowly rising model's. Its gradient
    is the crossing time's sensitivity, bounded where V's own (``∝`` the rise) is not. Steps that rise by
    less than ``scale`` mV are unchanged.

    Where the step rose by more, the fraction is taken as ``1 − (V_peak − V_start)/rise``, not
    ``(V_end − V_peak)/rise``: the same number, but with a rise of ~10²⁶ mV (AdEx at Δ_T ≤ 0.5 mV in
    float32) the latter's derivative in ``V_end``, ``1/rise − (V_end − V_peak)/rise²``, is two terms that
    cancel, and float32 underflows the second, which made AdEx count gradients 2–15× too large. Rounding can
    take that fraction to 0 only, never across it; those steps keep the division, so the sign is
    ``V_end − V_peak``'s exactly.
    """
    overshoot = V_end - V_peak
    rise = V_end - V_start
    steep = rise > scale
    fraction_above = 1 - (V_peak - V_start) / jnp.where(steep, rise, 1.0)
    divided = overshoot / jnp.maximum(rise / scale, 1.0)
    return jnp.where(
        steep & (jnp.sign(fraction_above) == jnp.sign(overshoot)), scale * fraction_above, divided
    )


def jump(value: Array, target: Array, gate: Array) -> Array:
    """``value`` where ``gate`` is 0 and ``target`` where it is 1, differentiable in all three.

    The same as ``value − (value − target)·gate`` but exact for any magnitude of ``value`` (the
    subtraction form cancels catastrophically when ``value`` is huge).
    """
    return value * (1 - gate) + target * gate


class AbstractContinuousNeuron(AbstractNeuron):
    """A neuron whose dynamics are a smooth ODE, so Diffrax can integrate it (`zoo.solve`).

    ``vector_field(t, y, current)`` returns dy/dt (per ms) for a state ``y`` of type ``State`` and the
    injected current at time ``t``. ``spike_threshold`` (mV) is where an upward crossing counts as a spike.
    The dynamics must not depend on ``t`` itself (all time dependence comes through ``current``):
    `zoo.solve` integrates each input sample on its own clock starting at 0.
    """

    spike_threshold: AbstractVar[Float[Array, ""]]

    @abc.abstractmethod
    def vector_field(self, t: float, y: NamedTuple, current: Float[ArrayLike, "..."]) -> NamedTuple:
        """dy/dt in units of state per ms."""
