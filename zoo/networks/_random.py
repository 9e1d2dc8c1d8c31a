"""Random draws shared by the connectome-built networks."""

import numpy as np

MAX_ROUNDS = 1000
"""`truncated_normal` gives up after this many rounds of redraws (each round redraws every value still
below ``low``); with an acceptance probability of ≥ 5 % a value survives them with probability < 1e-22."""


def truncated_normal(
    rng: np.random.Generator,
    mean: float,
    std: float,
    low: float,
    out: np.ndarray,
    *,
    label: str = "truncated normal",
    inclusive: bool = False,
) -> None:
    """Fill ``out`` (float32) with Normal(mean, std) samples, each redrawn until it exceeds ``low`` (NEST's
    ``redraw``), or with ``inclusive`` until it is at least ``low``. ``label`` (what is drawn, naming its
    parameter) begins the error messages.

    Raises:
        ValueError: ``low`` is ≥ 6 ``std`` above ``mean`` (or ``std`` = 0 and ``mean`` ≤ ``low``; with
            ``inclusive`` only above, and ``mean`` < ``low``), or some value is still out of bounds after
            `MAX_ROUNDS` rounds: the caller must pick a mean further above ``low``. It never loops forever.
    """
    if not (np.isfinite(mean) and np.isfinite(std) and std >= 0 and np.isfinite(low)):
        raise ValueError(f"{label}: mean {mean!r}, std {std!r} and low {low!r} must be finite, std ≥ 0.")
    bound = "at or above" if inclusive else "above"
    if out.size and (low > mean + 6.0 * std if inclusive else low >= mean + 6.0 * std):
        raise ValueError(
            f"{label}: no draw of Normal({mean:g}, {std:g}) can be expected {bound} {low:g} (it lies "
            f"{'more than' if inclusive else '≥'} 6 standard deviations above the mean); raise the mean "
            f"to {'at least' if inclusive else 'above'} the bound."
        )

    def out_of_bounds(values: np.ndarray) -> np.ndarray:
        return values < low if inclusive else values <= low

    rng.standard_normal(dtype=np.float32, out=out)
    out *= std
    out += mean
    bad = np.flatnonzero(out_of_bounds(out))
    for _ in range(MAX_ROUNDS):
        if not bad.size:
            return
        out[bad] = mean + std * rng.standard_normal(bad.size, dtype=np.float32)
        bad = bad[out_of_bounds(out[bad])]
    if bad.size:
        raise ValueError(
            f"{label}: {bad.size} draws of Normal({mean:g}, {std:g}) stayed below {low:g} after "
            f"{MAX_ROUNDS} rounds of redraws; raise the mean further above the bound."
        )
