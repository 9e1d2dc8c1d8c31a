"""Parameter errors quote the offending values, not the first values of the array."""

import re

import jax
import numpy as np
import pytest

from diffbrain.zoo import stimulus, synapses


def _last_bad(good: float, bad: float) -> np.ndarray:
    return np.r_[np.full(5, good), bad]


@pytest.mark.parametrize(
    ("build", "quoted"),
    [
        (lambda: synapses.STP(U=_last_bad(0.2, 1.5)), "U=[1.5]"),
        (lambda: synapses.NMDA(Mg=_last_bad(1.2, -1.0)), "got [-1.]"),
        (lambda: synapses.STP(tau_f=_last_bad(100.0, -1.0)), "got [-1.]"),
        (lambda: synapses.Expon(g_max=_last_bad(1.0, -2.0)), "got [-2.]"),
        (lambda: synapses.Expon(mode="cuba", g_max=_last_bad(1.0, np.inf)), "got [inf]"),
        (lambda: synapses.Expon(E=_last_bad(0.0, np.nan)), "got [nan]"),
        (lambda: synapses.Expon(tau=_last_bad(5.0, -1.0)), "got [-1.]"),
        (lambda: stimulus.poisson(jax.random.key(0), _last_bad(5.0, -3.0), 10, 0.1), "got [-3.]"),
        (lambda: stimulus.poisson(jax.random.key(0), _last_bad(5.0, 2e4), 10, 0.1), "rate=[20000.] Hz"),
    ],
    ids=[
        "STP-U>1",
        "NMDA-Mg",
        "STP-tau_f",
        "Expon-g_max",
        "cuba-g_max",
        "Expon-E",
        "Expon-tau",
        "rate<0",
        "rate·dt>1",
    ],
)
def test_errors_quote_the_offending_values(build, quoted):
    """Review: STP(U=[.2]*5 + [1.5]) said "got U=[0.2 0.2 0.2 0.2]", the first four values."""
    with pytest.raises(ValueError, match=re.escape(quoted)):
        build()


def test_scalar_parameters_are_quoted_too():
    with pytest.raises(ValueError, match=re.escape("got U=[1.5]")):
        synapses.STP(U=1.5)
    with pytest.raises(ValueError, match=re.escape("got [-1.]")):
        synapses.Expon(g_max=-1.0)
