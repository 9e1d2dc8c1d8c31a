"""Free parameters of a zoo model: bounds, transforms to an unconstrained vector, and start sampling.

A fit moves an unconstrained vector ``u ∈ ℝᵈ``; `FreeParams.to_model` maps it into the box of each free
parameter and writes the values into the model with `eqx.tree_at`. Two transforms keep every value strictly
inside its bounds ``(lo, hi)`` for any ``u``:

* ``"logit"`` (a box): ``θ = lo + (hi − lo)·σ(u)``, with ``σ(u) = 1/(1 + e^{−u})``;
* ``"log"`` (a box in log space, for positive scale parameters such as conductances and time constants):
  ``θ = lo·(hi/lo)^{σ(u)}``, so equal steps in ``u`` are equal ratios of ``θ``.

The default is ``"log"`` when ``lo > 0`` and the parameter's unit is a scale, i.e. ends in ``S``, ``ms``,
``Ω``, ``F``, ``1/ms`` or ``Hz`` (conductance, time, resistance, capacitance, rate), else ``"logit"``. Units
per membrane area (`zoo.HH`'s ``mS/cm²`` and ``µF/cm²``) do not end so and get ``"logit"``; over bounds that
span decades pass ``transforms={"g_L": "log"}``. Both are PyTrees of arrays, so they `vmap` over starts.

Examples:
    >>> from diffbrain import fit, zoo
    >>> fit.free_params(zoo.TraubHH(), {"g_L": (0.001, 1.0)}).transforms  # µS
    ('log',)
    >>> fit.free_params(zoo.HH(), {"g_L": (1e-4, 0.1)}).transforms  # mS/cm²
    ('logit',)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from diffbrain.zoo._param import parameters

TRANSFORMS = ("log", "logit")
"""The transforms a free parameter may use (see the module docstring)."""

_SCALE_UNITS = ("S", "ms", "Ω", "F", "1/ms", "Hz")
"""Unit endings of positive scale parameters, which get the ``"log"`` transform by default."""

_EDGE = 1e-6
"""Sampled starts keep this fraction of the box away from its edges, where σ saturates."""

_INSIDE = 1e-12
"""`FreeParams.to_values` keeps σ(u) this far from 0 and 1: σ(u) rounds to exactly 0 or 1 for |u| ≳ 37 in
float64 (a search can go that far), which would put a value on its bound."""


def model_check_error(model: eqx.Module) -> ValueError | None:
    """The ``ValueError`` the checks of ``model``'s class (every ``__check_init__`` of its class and bases, as
    its constructor runs them) raise on its current values, or None if they pass.

    `FreeParams.with_values` sets values with `eqx.tree_at`, which skips these checks, so a fit uses this to
    check the domain of the bounds (`free_params`) and its result (`diffbrain.fit.fit`)."""
    for cls in reversed(type(model).__mro__):
        check = cls.__dict__.get("__check_init__")
        if check is None:
            continue
        try:
            check(model)
        except ValueError as error:
            return error
    return None


def _named(error: ValueError) -> set[str]:
    """The argument names a zoo check's message quotes in backticks."""
    return set(re.findall(r"`(\w+)`", str(error)))


def _check_domain(model: eqx.Module, bounds: Mapping[str, tuple[float, float]]) -> None:
    """Refuse a box that reaches values ``model``'s class refuses, one free parameter at a time.

    Each free parameter is set (the others keep ``model``'s values) to the values next to its bounds, inside
    (a fit's values are strictly inside: ``(0, 50)`` is fine for a positive ``g_L``), and to the middle of
    its box, and the class's checks are run. A failing check that quotes only this parameter and fixed ones
    is a domain rule the box breaks (``g_L > 0``, ``V_reset < V_th`` with ``V_th`` fixed): a ValueError. A
    check that quotes another free parameter (``V_reset < V_th`` with both free) depends on where the fit
    goes; `diffbrain.fit.fit` checks its result against it instead.
    """
    if model_check_error(model) is not None:  # a model built past its checks: nothing to compare against
        return
    owner = type(model).__name__
    for name, (lo, hi) in bounds.items():
        for value in (np.nextafter(lo, hi), 0.5 * (lo + hi), np.nextafter(hi, lo)):
            value = np.asarray(value, np.float64)  # a fit's float64, whatever the model's dtype
            trial = eqx.tree_at(lambda m, name=name: getattr(m, name), model, value)
            error = model_check_error(trial)
            if error is None or (_named(error) - {name}) & set(bounds):
                continue
            raise ValueError(
                f"`free[{name!r}]` = ({lo}, {hi}) reaches {name} = {float(value):g}, which {owner} refuses: "
                f"{error} Narrow the bounds of `{name}` to values {owner} accepts."
            )


def _units(model: eqx.Module) -> dict[str, str]:
    return {f.name: f.metadata["unit"] for f in dataclasses.fields(model) if "unit" in f.metadata}


class FreeParams(eqx.Module):
    """Which parameters of a model a fit moves, within which bounds, through which transforms.

    Build it with `free_params`. Attributes: ``names`` (field names), ``lower``/``upper`` (bounds, in the
    parameters' units, shape ``[d]``), ``transforms`` (``"log"`` or ``"logit"`` per name).
    """

    names: tuple[str, ...] = eqx.field(static=True)
    transforms: tuple[str, ...] = eqx.field(static=True)
    lower: Float[Array, " d"]
    upper: Float[Array, " d"]

    @property
    def size(self) -> int:
        """Number of free parameters ``d``."""
        return len(self.names)

    def bounds(self) -> dict[str, tuple[float, float]]:
        """``{name: (lower, upper)}`` as Python floats, in the parameters' units."""
        return {
            name: (float(lo), float(hi))
            for name, lo, hi in zip(self.names, self.lower, self.upper, strict=True)
        }

    def _is_log(self) -> Array:
        return jnp.asarray([t == "log" for t in self.transforms])

    def from_unit(self, x: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
        """Map ``x ∈ [0, 1]ᵈ`` to parameter values (linear or log-linear in the box)."""
        lo, hi = self.lower, self.upper
        log_lo = jnp.log(jnp.where(self._is_log(), lo, 1.0))
        log_hi = jnp.log(jnp.where(self._is_log(), hi, 1.0))
        logarithmic = jnp.exp(log_lo + (log_hi - log_lo) * x)
        # the clip only mends rounding at the edges (exp(log hi) may exceed hi by an ulp)
        return jnp.clip(jnp.where(self._is_log(), logarithmic, lo + (hi - lo) * x), lo, hi)

    def to_unit(self, theta: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
        """Inverse of `from_unit`: parameter values → ``[0, 1]ᵈ`` (values outside the box clipped into it)."""
        lo, hi = self.lower, self.upper
        theta = jnp.clip(theta, lo, hi)  # a log of a value below a positive box would be NaN
        safe = jnp.where(self._is_log(), theta, 1.0)
        log_lo = jnp.log(jnp.where(self._is_log(), lo, 1.0))
        log_hi = jnp.log(jnp.where(self._is_log(), hi, 2.0))
        logarithmic = (jnp.log(safe) - log_lo) / (log_hi - log_lo)
        return jnp.where(self._is_log(), logarithmic, (theta - lo) / (hi - lo))

    def to_values(self, u: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
        """Unconstrained ``u`` → parameter values strictly inside the bounds, ``lower < θ < upper`` for any
        ``u`` (so a fitted value can be a start again).

        σ(u) is kept 10⁻¹² from 0 and 1, so a value is about 10⁻¹² of the box (of its log range for
        ``"log"``) from a bound where the dtype resolves that; where it does not (float32, where 1 − 10⁻¹²
        rounds to 1, or a box narrow next to its values), the value is the representable number next to
        the bound, inside.
        """
        values = self.from_unit(jnp.clip(jax.nn.sigmoid(u), _INSIDE, 1 - _INSIDE))
        lo, hi = self.lower.astype(values.dtype), self.upper.astype(values.dtype)
        return jnp.clip(values, jnp.nextafter(lo, hi), jnp.nextafter(hi, lo))

    def to_unconstrained(self, theta: Float[Array, "*b d"]) -> Float[Array, "*b d"]:
        """Parameter values → unconstrained ``u``: the inverse of `to_values` for values at least 10⁻⁶ of the
        box inside the bounds; closer ones (or on a bound) map to that distance (|u| ≤ 13.8), where σ still
        has a gradient for a fit to follow."""
        x = jnp.clip(self.to_unit(theta), _EDGE, 1 - _EDGE)
        return jnp.log(x) - jnp.log1p(-x)

    def to_model(self, model: eqx.Module, u: Float[Array, " d"]) -> eqx.Module:
        """``model`` with the free parameters set from the unconstrained vector ``u`` (shape ``[d]``)."""
        return self.with_values(model, self.to_values(u))

    def with_values(self, model: eqx.Module, values: Float[Array, " d"]) -> eqx.Module:
        """``model`` with the free parameters set to ``values`` (in their units, shape ``[d]``)."""
        return eqx.tree_at(
            lambda m: [getattr(m, name) for name in self.names],
            model,
            [values[i].astype(jnp.result_type(getattr(model, name))) for i, name in enumerate(self.names)],
        )

    def from_model(self, model: eqx.Module) -> Float[Array, " d"]:
        """The unconstrained vector of ``model``'s current values (clipped into the box)."""
        theta = jnp.stack([jnp.asarray(getattr(model, name), self.lower.dtype) for name in self.names])
        return self.to_unconstrained(theta)

    def as_dict(self, u: Float[Array, " d"]) -> dict[str, float]:
        """``{name: value}`` of the parameters ``u`` stands for, as Python floats."""
        values = np.asarray(self.to_values(jnp.asarray(u)))
        return {name: float(v) for name, v in zip(self.names, values, strict=True)}

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, " n d"]:
        """``n`` unconstrained starts, uniform in the box (log-uniform for ``"log"`` parameters)."""
        return _uniform_logits(key, (n, self.size), jnp.dtype(self.lower.dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _uniform_logits(key: PRNGKeyArray, shape: tuple[int, int], dtype) -> Float[Array, " n d"]:
    """Logits of uniform draws in ``(_EDGE, 1 − _EDGE)``, in one compiled call (eagerly, its four operations
    took 7 ms, a third of a GIF fit's value-and-gradient, at each of `gradient.lbfgsb`'s restarts)."""
    x = jax.random.uniform(key, shape, dtype, _EDGE, 1 - _EDGE)
    return jnp.log(x) - jnp.log1p(-x)


def free_params(
    model: eqx.Module,
    free: Mapping[str, tuple[float, float]],
    *,
    transforms: Mapping[str, str] | None = None,
    dtype=None,
) -> FreeParams:
    """Declare the free parameters of ``model`` and their bounds.

    Args:
        model: a zoo model; the names must be among its documented (unit-carrying) parameters.
        free: ``{name: (lower, upper)}`` in the parameter's unit, ``lower < upper``, both finite, and the
            values strictly between them ones the model's class accepts with its other parameters as given
            (a ValueError otherwise, e.g. for ``g_L`` in ``(-50, 50)``, or ``V_reset`` reaching a fixed
            ``V_th``). A rule between two free parameters (``V_reset < V_th`` with both free) is not
            enforced here: `diffbrain.fit.fit` warns when its result breaks one.
        transforms: optional ``{name: "log" | "logit"}`` overrides of the default transform.
        dtype: dtype of the bounds; by default float64 where JAX has it (``jax_enable_x64``, which
            `diffbrain.fit.fit` enables for its duration), else float32 without a warning.

    Returns:
        A `FreeParams`.

    Examples:
        >>> from diffbrain import zoo, fit
        >>> free = fit.free_params(zoo.LIF(), {"g_L": (5.0, 50.0), "V_rest": (-80.0, -50.0)})
        >>> free.transforms
        ('log', 'logit')
    """
    if not free:
        raise ValueError(
            "`free` is empty; name at least one parameter and its bounds, e.g. {'g_L': (1, 50)}."
        )
    known = parameters(model)
    unknown = [name for name in free if name not in known]
    if unknown:
        raise ValueError(
            f"`free` names {unknown}, which {type(model).__name__} does not have; "
            f"its parameters are {sorted(known)}."
        )
    if transforms is not None and not isinstance(transforms, Mapping):
        raise TypeError(
            f"`transforms` must map free parameters to {' or '.join(map(repr, TRANSFORMS))}, e.g. "
            f"{{'g_L': 'log'}}, got {transforms!r}."
        )
    transforms = dict(transforms or {})
    bad = {name: t for name, t in transforms.items() if name not in free or t not in TRANSFORMS}
    if bad:
        raise ValueError(f"`transforms` {bad}: keys must be in `free` and values one of {TRANSFORMS}.")
    units = _units(model)
    names, lower, upper, chosen = [], [], [], []
    for name, bounds in free.items():
        message = f"`free[{name!r}]` must be a (lower, upper) pair of numbers, got {bounds!r}."
        if isinstance(bounds, str):  # "15" would read as the pair (1, 5)
            raise ValueError(message)
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(message) from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"`free[{name!r}]` = ({lo}, {hi}) must be finite with lower < upper.")
        if jnp.ndim(known[name]) != 0:
            raise ValueError(f"`{name}` is an array parameter; only scalar parameters can be free for now.")
        default = "log" if lo > 0 and units[name].endswith(_SCALE_UNITS) else "logit"
        transform = transforms.get(name, default)
        if transform == "log" and lo <= 0:
            raise ValueError(f"`{name}` has lower bound {lo} <= 0, so it cannot use the 'log' transform.")
        names.append(name)
        lower.append(lo)
        upper.append(hi)
        chosen.append(transform)
    _check_domain(model, dict(zip(names, zip(lower, upper, strict=True), strict=True)))
    if dtype is None:
        dtype = jax.dtypes.canonicalize_dtype(jnp.float64)
    free_set = FreeParams(
        names=tuple(names),
        transforms=tuple(chosen),
        lower=jnp.asarray(lower, dtype),
        upper=jnp.asarray(upper, dtype),
    )
    stored = np.asarray(free_set.lower), np.asarray(free_set.upper)  # float32 without x64, whatever ``dtype``
    for name, lo, hi, inside in zip(names, lower, upper, np.nextafter(*stored) < stored[1], strict=True):
        if not inside:
            raise ValueError(
                f"`free[{name!r}]` = ({lo}, {hi}) holds no {stored[0].dtype.name} value strictly between its "
                "bounds, where a fit could move; widen the box, or store it in float64 (dtype=jnp.float64 "
                "with JAX's x64 enabled, as `fit` does)."
            )
    return free_set
