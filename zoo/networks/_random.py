"""Random draws shared by the connectome-built networks."""

import numpy as np

MAX_ROUNDS = 1000
"""`truncated_normal` gives up after this many rounds of redraws (each round redraws every value still at
or below ``low``); with an acceptance probability of ≥ 5 % a value survives them with probability < 1e-22."""


def truncated_normal(rng: np.random.Generator, mean: float, std: float, low: float, out: np.ndarray) -> None:
    """Fill ``out`` (float32) with Normal(mean, std) samples, each redrawn until it exceeds ``low`` (NEST's
    ``redraw``).

    Raises:
        ValueError: ``low`` is ≥ 6 ``std`` above ``mean`` (or ``std`` = 0 and ``mean`` ≤ ``low``), or some
            value is still ≤ ``low`` after `MAX_ROUNDS` rounds: the caller must pick a mean further above
            ``low``. It never loops forever.
    """
    if not (np.isfinite(mean) and np.isfinite(std) and std >= 0 and np.isfinite(low)):
        raise ValueError(
            f"truncated normal: mean {mean!r}, std {std!r} and low {low!r} must be finite, std ≥ 0."
        )
    if out.size and low >= mean + 6.0 * std:
        raise ValueError(
            f"truncated normal: no draw of Normal({mean:g}, {std:g}) can be expected above {low:g} "
            "(it lies ≥ 6 standard deviations above the mean); raise the mean above the bound."
        )
    rng.standard_normal(dtype=np.float32, out=out)
    out *= std
    out += mean
    bad = np.flatnonzero(out <= low)
    for _ in range(MAX_ROUNDS):
        if not bad.size:
            return
        out[bad] = mean + std * rng.standard_normal(bad.size, dtype=np.float32)
        bad = bad[out[bad] <= low]
    if bad.size:
        raise ValueError(
            f"truncated normal: {bad.size} draws of Normal({mean:g}, {std:g}) stayed ≤ {low:g} after "
            f"{MAX_ROUNDS} rounds of redraws; raise the mean further above the bound."
        )
