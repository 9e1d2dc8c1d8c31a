"""The accuracy `zoo._integrate.exprel`'s docstring states for its float32 gradient, checked on every float32
where it is worst: just outside the switch to the Taylor series (|x| = 4 ε^⅕ = 0.165)."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from diffbrain.zoo._integrate import exprel


def _exact_slope(x: np.ndarray) -> np.ndarray:
    """d/dx (eˣ − 1)/x in float64 for |x| < 0.5: its Taylor series to 25 terms (float32's ε is 10⁹ times
    float64's, so float64 is exact enough here)."""
    return sum(k * x ** (k - 1) / math.factorial(k + 1) for k in range(1, 25))


def test_float32_gradient_is_within_the_documented_bound():
    """Review: the docstring said 30 ε; the gradient is 51.4 ε off at x = −0.16511829 (every float32 with
    1/32 ≤ |x| < 8 searched; this test searches 0.16 ≤ |x| < 0.175, where the worst ones lie), 52.5 ε
    with the test suite's XLA flags (LLVM's optimisations skipped, see tests/conftest.py)."""
    documented = re.search(r"(\d+) ε \(float32\)", exprel.__doc__)
    assert documented is not None, "exprel's docstring no longer states its float32 gradient bound"
    bits = np.arange(np.float32(0.16).view(np.int32), np.float32(0.175).view(np.int32), dtype=np.int32)
    x = np.concatenate([bits.view(np.float32), -bits.view(np.float32)])
    slope = np.asarray(jax.jit(jax.vmap(jax.grad(exprel)))(jnp.asarray(x)), np.float64)
    error_in_eps = np.max(np.abs(slope / _exact_slope(x.astype(np.float64)) - 1)) / float(
        np.finfo(np.float32).eps
    )
    assert error_in_eps > 50  # the search still reaches the worst values
    assert error_in_eps <= int(documented.group(1))
