"""A loss weight must be a finite number >= 0 (review s26: ``-1.0 * VoltageMSE()`` fitted to loss −10.95
with g_L at its upper bound, status ok; ``nan * VoltageMSE()`` failed 21 restarts with a generic message)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit


@pytest.mark.parametrize(
    "weight", [-1.0, float("nan"), float("inf"), -np.inf, np.float64(-0.5), jnp.asarray(-2.0)]
)
def test_a_weight_that_is_not_finite_and_non_negative_is_refused_naming_the_term(weight):
    with pytest.raises(ValueError, match=r"weight .* of VoltageMSE\(.*\) must be a finite number >= 0"):
        weight * fit.VoltageMSE()
    with pytest.raises(ValueError, match=r"of SpikeCount\(\) must be a finite number >= 0"):
        fit.VoltageMSE() + fit.SpikeCount() * weight
    with pytest.raises(ValueError, match=r"must be a finite number >= 0"):
        fit.Weighted(terms=((weight, fit.VanRossum()),))
    with pytest.raises(ValueError, match=r"must be a finite number >= 0"):  # a sum scaled as a whole
        weight * (fit.VoltageMSE() + fit.SpikeCount())


def test_a_weight_must_be_one_number():
    with pytest.raises(ValueError, match=r"weight \[1.0, 2.0\] of VoltageMSE\(.*\) must be a finite number"):
        fit.Weighted(terms=((jnp.asarray([1.0, 2.0]), fit.VoltageMSE()),))
    for one_element in (np.array([0.5]), jnp.asarray([0.5])):  # one number, but not a scalar
        with pytest.raises(ValueError, match=r"weight \[0.5\] of VoltageMSE\(.*\) must be a finite number"):
            fit.Weighted(terms=((one_element, fit.VoltageMSE()),))


@pytest.mark.parametrize("other", [0.5, np.array([0.5]), "VoltageMSE"])
def test_a_loss_plus_something_not_a_loss_is_refused_naming_it_and_the_fix(other):
    """Review s26: ``VoltageMSE() + 0.5`` built a sum with a float term, and `fit.fit` failed later with
    ``AttributeError: 'float' object has no attribute 'check'``."""
    with pytest.raises(TypeError, match=r"a loss adds only another loss; .* e\.g\. 0\.5 \* VoltageMSE\("):
        fit.VoltageMSE() + other
    with pytest.raises(TypeError, match=re.escape(repr(other))):
        (fit.VoltageMSE() + fit.SpikeCount()) + other


@pytest.mark.parametrize("weight", [0.0, 0.5, 3, np.float32(2.0), jnp.asarray(1.5)])
def test_finite_non_negative_weights_are_kept(weight):
    loss = fit.VoltageMSE() + weight * fit.SpikeCount()
    assert loss.terms[1][0] == weight


def test_a_traced_weight_is_not_checked():
    """Inside ``jit`` the weight's value is unknown: the sum is built, and evaluates."""
    V = jnp.zeros((10, 1))
    target = fit.Target(voltage=jnp.ones((10, 1)), spikes=jnp.zeros((10, 1)), dt=0.1)

    @jax.jit
    def scaled(weight):
        return (weight * fit.VoltageMSE())(V, V, target)

    assert float(scaled(2.0)) == pytest.approx(2.0)
