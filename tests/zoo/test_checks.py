"""The shared checks: time steps, and durations as whole numbers of steps."""

import numpy as np
import pytest

from diffbrain import zoo
from diffbrain.zoo._checks import n_steps_of


@pytest.mark.parametrize(
    ("duration", "dt", "n_steps"),
    [
        (1000.0, 0.1, 10_000),
        (0.1 * 3, 0.1, 3),  # 0.30000000000000004
        (sum([0.1] * 1000), 0.1, 1000),  # 99.9999999999986
        (np.float32(100_000.0), np.float32(0.1), 1_000_000),
        (100_000.0, float(np.float32(0.1)), 1_000_000),  # a float32 dt converted to a Python float
        (5, 1, 5),
    ],
)
def test_multiples_of_dt_up_to_float_rounding_are_whole_steps(duration, dt, n_steps):
    assert n_steps_of(duration, dt) == n_steps


@pytest.mark.parametrize("duration", [0.25, 100.05, 100_000.04, 100_000.05, 100_000.09, 1_000_000.05])
def test_a_fraction_of_a_step_is_refused_at_any_duration(duration):
    with pytest.raises(ValueError, match="`duration_ms` must be a positive multiple of dt"):
        n_steps_of(duration, 0.1)


@pytest.mark.parametrize(("duration", "dt"), [(1e6, 0.3), (1_000_000, 0.3), (1e6, 0.15), (2e6, 0.7)])
def test_a_long_whole_duration_is_not_taken_for_a_rounded_float32(duration, dt):
    """Review: 1e6 is exactly a float32, so it got float32's rounding allowance, a third of a step here."""
    with pytest.raises(ValueError, match="`duration_ms` must be a positive multiple of dt"):
        n_steps_of(duration, dt)


@pytest.mark.parametrize("dt", [0.0, -0.1, np.nan, True, "0.1", 0.1 + 0j])
def test_a_bad_dt_is_named(dt):
    with pytest.raises(ValueError, match="`dt`"):
        n_steps_of(100.0, dt)
    with pytest.raises(ValueError, match="`dt`"):
        zoo.simulate(zoo.LIF(), np.zeros(10), dt)
