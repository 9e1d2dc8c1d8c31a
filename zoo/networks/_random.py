"""Random draws shared by the connectome-built networks."""

import numpy as np


def truncated_normal(rng: np.random.Generator, mean: float, std: float, low: float, out: np.ndarray) -> None:
    """Fill ``out`` (float32) with Normal(mean, std) samples, each redrawn until it exceeds ``low`` (NEST's
    ``redraw``)."""
    rng.standard_normal(dtype=np.float32, out=out)
    out *= std
    out += mean
    bad = np.flatnonzero(out <= low)
    while bad.size:
        out[bad] = mean + std * rng.standard_normal(bad.size, dtype=np.float32)
        bad = bad[out[bad] <= low]
