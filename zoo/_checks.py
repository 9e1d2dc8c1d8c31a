"""Parameter validation shared by every zoo model.

Checks run on concrete values (Python numbers, NumPy or JAX arrays outside a trace) and raise a
``ValueError`` that names the argument, the bad value and the fix. Traced values (a model built inside
``jit``) cannot be checked in Python; `check_dt` then falls back to ``eqx.error_if``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def _concrete(value) -> np.ndarray | None:
    if isinstance(value, jax.core.Tracer):
        return None
    return np.asarray(value)


def offending(arr: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """The first four elements of ``arr`` where ``ok`` is False, to quote in an error message."""
    return arr[~ok][:4]


def is_half_precision(dtype) -> bool:
    """Whether ``dtype`` is a floating type narrower than float32 (float16, bfloat16)."""
    return bool(jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32)


def refuse_half_precision(owner: str, dtype) -> None:
    """Raise ``ValueError`` when a network's floating ``dtype`` (its neuron's) is float16 or bfloat16, whose
    spike counts are wrong, not just coarse (a bfloat16 COBA network of 400 fired at 1.5 Hz, float32 9.5)."""
    if is_half_precision(dtype):
        raise ValueError(
            f"{owner}: the neuron's parameters are {jnp.dtype(dtype).name}, and a network runs in its "
            "neuron's dtype, but half precision gives wrong spike counts (bfloat16 rounds a LIF's step to "
            "0.5 mV near rest). Cast the neuron to float32: zoo.astype(neuron, jnp.float32)."
        )


def refuse_half_precision_run(owner: str, net, state) -> None:
    """Raise ``ValueError`` when a network or the ``state`` it would run from holds float16 or bfloat16
    arrays: `refuse_half_precision` at run time, for a network cast after it was built (e.g.
    ``zoo.astype(net, jnp.bfloat16)``) or a half-precision ``state``."""
    for name, tree in (("the network", net), ("`state`", state)):
        leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
        half = next((leaf.dtype for leaf in leaves if is_half_precision(leaf.dtype)), None)
        if half is not None:
            raise ValueError(
                f"{owner}: {name} holds {jnp.dtype(half).name} arrays, but half precision gives wrong spike "
                "counts (a bfloat16 COBA network of 400 fired at 1.5 Hz where float32 gives 9.5 Hz). Cast "
                "it to float32: zoo.astype(net, jnp.float32) (likewise a `state`)."
            )


def check_positive(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0."""
    arr = _concrete(value)
    if arr is None:
        return
    ok = np.isfinite(arr) & (arr > 0)
    if not np.all(ok):
        raise ValueError(
            f"{owner}: `{name}` must be > 0{' ' + unit if unit else ''} and finite, got "
            f"{offending(arr, ok)}. Pass a positive value for `{name}`."
        )


def check_nonnegative(owner: str, name: str, value, unit: str = "") -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and ≥ 0."""
    arr = _concrete(value)
    if arr is None:
        return
    ok = np.isfinite(arr) & (arr >= 0)
    if not np.all(ok):
        raise ValueError(
            f"{owner}: `{name}` must be >= 0{' ' + unit if unit else ''} and finite, got "
            f"{offending(arr, ok)}. Pass a non-negative value for `{name}`."
        )


def check_finite(owner: str, name: str, value) -> None:
    """Raise ``ValueError`` if any element of ``value`` is NaN or infinite."""
    arr = _concrete(value)
    if arr is None:
        return
    ok = np.isfinite(arr)
    if not np.all(ok):
        raise ValueError(f"{owner}: `{name}` must be finite, got {offending(arr, ok)}.")


def check_less(owner: str, small: str, small_value, large: str, large_value) -> None:
    """Raise ``ValueError`` unless ``small_value < large_value`` elementwise."""
    a, b = _concrete(small_value), _concrete(large_value)
    if a is None or b is None:
        return
    if np.any(a >= b):
        raise ValueError(f"{owner}: `{small}` must be below `{large}`, got {small}={a} and {large}={b}.")


def check_broadcastable(owner: str, fields: dict[str, object]) -> tuple[int, ...]:
    """Return the broadcast shape of heterogeneous parameters, or raise naming the offending field."""
    shape: tuple[int, ...] = ()
    for name, value in fields.items():
        try:
            shape = np.broadcast_shapes(shape, np.shape(value))
        except ValueError:
            raise ValueError(
                f"{owner}: `{name}` has shape {np.shape(value)}, which does not broadcast with the other "
                f"parameters' shape {shape}. Give heterogeneous parameters one common population shape."
            ) from None
    return shape


def as_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    """A population shape as a tuple: an integer ``n`` means ``(n,)``."""
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(shape)


def _is_real(dtype) -> bool:
    return jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)


def check_dt(dt):
    """Validate a time step in ms: ``ValueError`` when concrete, ``eqx.error_if`` when traced."""
    arr = _concrete(dt)
    if not _is_real(jnp.result_type(dt) if arr is None else arr.dtype):
        raise ValueError(
            f"`dt` must be a real number of ms (not a bool, a string or a complex number), got {dt!r}. "
            "Pass e.g. dt=0.1."
        )
    if arr is not None:
        if arr.ndim != 0 or not np.isfinite(arr) or arr <= 0:
            raise ValueError(f"`dt` must be a positive finite scalar in ms, got {dt!r}. Pass e.g. dt=0.1.")
        return dt
    return eqx.error_if(dt, ~(jnp.isfinite(dt) & (dt > 0)), "`dt` must be a positive finite time step in ms.")


# Durations may miss a whole number of steps by this fraction of a step, on top of their float rounding.
_STEP_TOLERANCE = 1e-3


def _rounding(value: np.ndarray) -> float:
    """The relative rounding error ``value`` may carry: its float type's epsilon, float32's if it is one.

    A float64 value that is exactly a float32 (``float(np.float32(0.1))``) may be a rounded float32, so it
    gets float32's epsilon; whole numbers (``1e6``, of any dtype) are exact.
    """
    if jnp.issubdtype(value.dtype, jnp.integer) or (np.isfinite(value) and value == np.round(value)):
        return 0.0
    eps = float(jnp.finfo(value.dtype).eps)
    with np.errstate(over="ignore"):
        if value.astype(np.float32) == value:
            eps = max(eps, float(np.finfo(np.float32).eps))
    return eps


def whole_steps(duration: float, dt: float) -> int | None:
    """The number of ``dt`` steps in ``duration`` (both in ms), or None unless it is a whole number of them.

    A duration may miss a whole number of steps by a thousandth of a step plus the float rounding of
    ``duration`` and ``dt`` (their float type's epsilon times the step count), so ``1000.0`` at
    ``dt = 0.1`` and float32 values count as multiples while half a step is refused at any duration.
    ``dt`` must already be checked (`check_dt`).
    """
    duration, dt = np.asarray(duration), np.asarray(dt)
    steps = float(duration) / float(dt)
    if not np.isfinite(steps):
        return None
    n_steps = round(steps)
    tolerance = _STEP_TOLERANCE + abs(steps) * (_rounding(duration) + _rounding(dt))
    return n_steps if abs(steps - n_steps) <= tolerance else None


def n_steps_of(duration_ms, dt: float) -> int:
    """The number of ``dt`` steps in ``duration_ms`` (both in ms).

    Raises:
        ValueError: ``dt`` is not a positive finite number of ms; ``duration_ms`` is not one concrete real
            number (a string, a bool, None, a list or array even of one value, a traced value) or not a
            positive whole multiple of ``dt`` (see `whole_steps` for the tolerance).
    """
    check_dt(dt)
    value = None if isinstance(duration_ms, jax.core.Tracer) else np.asarray(duration_ms)
    if value is None or not _is_real(value.dtype) or value.ndim != 0:
        raise ValueError(
            "`duration_ms` must be one concrete real number of ms (the step count fixes the scan's length), "
            f"got {type(duration_ms).__name__} {duration_ms!r}."
        )
    n_steps = whole_steps(value, dt)
    if n_steps is None or n_steps < 1:
        raise ValueError(f"`duration_ms` must be a positive multiple of dt = {dt} ms, got {duration_ms!r}.")
    return n_steps
