"""`zoo._integrate.exprel`, the exponential-Euler factor every fixed-step model uses, against its Taylor
series in every floating dtype: value and gradient, on both sides of the switch to the series."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.zoo._integrate import exprel

X = np.concatenate([-np.logspace(-6, 1, 700), [0.0], np.logspace(-6, 1, 700)])


def exact(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eˣ − 1)/x and its derivative in float64: 25 Taylor terms for |x| < 0.5, the closed form above."""
    small, safe = np.abs(x) < 0.5, np.where(x == 0, 1.0, x)
    value = np.where(small, sum(x**k / math.factorial(k + 1) for k in range(25)), np.expm1(safe) / safe)
    slope = sum(k * x ** (k - 1) / math.factorial(k + 1) for k in range(1, 25))
    slope = np.where(small, slope, (np.exp(safe) * safe - np.expm1(safe)) / safe**2)
    return value, slope


@pytest.mark.parametrize(
    "dtype, value_eps, slope_eps",
    [(jnp.float16, 3, 8), (jnp.bfloat16, 3, 8), (jnp.float32, 4, 60), (jnp.float64, 4, 3000)],
)
def test_value_and_gradient_are_within_a_few_eps_in_every_dtype(dtype, value_eps, slope_eps):
    """Review: with a fixed switch at |x| = 10⁻³ the gradient was inf in float16 and 8× off in bfloat16
    just above it (GIF's defaults, b·dt = 10⁻³, gave NaN gradients in float16), 3·10⁻⁴ off in float32."""
    x = jnp.asarray(X, dtype)
    value, slope = exact(np.asarray(x, np.float64))
    eps = float(jnp.finfo(dtype).eps)
    ours = np.asarray(exprel(x), np.float64)
    our_slope = np.asarray(jax.vmap(jax.grad(exprel))(x), np.float64)
    assert exprel(x).dtype == dtype
    assert np.max(np.abs(ours / value - 1)) < value_eps * eps
    assert np.max(np.abs(our_slope / slope - 1)) < slope_eps * eps
