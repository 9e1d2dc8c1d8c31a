"""`step_ms`: a time step as the Python float of ms it was written as, shared by the networks, the tasks
and learn's network (a light module: importing it loads neither the zoo nor the tasks)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def step_ms(dt) -> float:
    """A (checked) time step ``dt`` as the Python float of ms that delays and pulse edges are rounded
    against: a float32 or narrower one at its shortest decimal (``np.float32(0.1)``, 0.10000000149… ms, is
    0.1 ms: that is what it was written as, and at 0.10000000149 ms a 0.25 ms delay would round down), any
    other (a float64, a Python float or int) unchanged."""
    array = np.asarray(dt)
    value = float(array)
    if jnp.issubdtype(array.dtype, jnp.floating) and array.dtype.itemsize < 8 and array.ndim == 0:
        try:
            shortest = float(str(array[()]))
        except ValueError:  # a float type whose str is not a decimal: keep its value
            return value
        if np.asarray(shortest).astype(array.dtype) == array:
            return shortest
    return value
