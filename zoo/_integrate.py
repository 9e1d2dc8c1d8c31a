"""Exponential Euler: the fixed-step integrator every zoo model's `step` uses.

For dy/dt = f(y) whose linear part has rate λ (f = −λ·y + …), one step is
``y + dt·f(y)·exprel(−λ·dt)`` with ``exprel(x) = (eˣ − 1)/x``. It is exact when f is linear in y and the
input is constant over the step (LIF, synaptic kernels, HH gates at frozen V), and first-order accurate
otherwise. `exprel` is evaluated in a form whose value and gradient are finite everywhere, including
the removable singularity at 0 (the HH rate functions use it too).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

_SERIES_BELOW = 1e-3


def exprel(x: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """``(exp(x) − 1)/x`` with the limit 1 at x = 0; finite value and gradient for every finite x."""
    x = jnp.asarray(x)
    small = jnp.abs(x) < _SERIES_BELOW
    safe_x = jnp.where(small, jnp.ones_like(x), x)
    return jnp.where(small, 1 + x / 2 + x * x / 6, jnp.expm1(safe_x) / safe_x)


def exp_euler(y: Array, dydt: Array, rate: Array, dt) -> Array:
    """One exponential-Euler step of ``y`` with derivative ``dydt`` and linear decay rate ``rate`` (1/ms)."""
    return y + dt * dydt * exprel(-rate * dt)
