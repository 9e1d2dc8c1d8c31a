"""Every surrogate: exact Heaviside forward, its named pseudo-derivative backward, stable and dtype-true."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffbrain.zoo import surrogate
from diffbrain.zoo.surrogate import SURROGATES

jax.config.update("jax_enable_x64", True)

# Area under each default pseudo-derivative (documented in the class docstrings).
AREA = {
    "sigmoid": 1.0,
    "arctan": 1.0,
    "gaussian": 1.0,
    "multi-gaussian": 0.85,
    "relu": 0.3,
    "piecewise-quadratic": 1.0,
    "superspike": 0.2,
    "exponential": 1.0,
}


@pytest.fixture(params=sorted(SURROGATES))
def name(request):
    return request.param


def test_every_surrogate_has_a_documented_area():
    assert set(AREA) == set(SURROGATES)


def test_forward_is_exactly_heaviside(name):
    spike = SURROGATES[name]()
    x = jnp.array([-1e4, -1.0, -1e-7, 0.0, 1e-7, 1.0, 1e4])
    np.testing.assert_array_equal(spike(x), [0, 0, 0, 1, 1, 1, 1])


def test_gradient_is_the_pseudo_derivative(name):
    spike = SURROGATES[name]()
    x = jnp.linspace(-3.0, 3.0, 61)
    grads = jax.vmap(jax.grad(spike))(x)
    np.testing.assert_allclose(grads, spike.pseudo_derivative(x), rtol=1e-12)
    assert float(jnp.max(grads)) > 0


def test_pseudo_derivative_area(name):
    spike = SURROGATES[name]()
    x = jnp.linspace(-200.0, 200.0, 400_001)
    area = float(jnp.trapezoid(spike.pseudo_derivative(x), x))
    assert area == pytest.approx(AREA[name], rel=2e-3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_stable_and_dtype_preserving_for_large_inputs(name, dtype):
    spike = SURROGATES[name]()
    x = jnp.array([-1e4, -30.0, 0.0, 30.0, 1e4], dtype=dtype)
    out = spike(x)
    grads = jax.vmap(jax.grad(spike))(x)
    assert out.dtype == dtype and grads.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(grads)))
    if name != "multi-gaussian":  # the only one with negative side lobes
        assert bool(jnp.all(grads >= 0))


def test_integer_input_becomes_float(name):
    assert jnp.issubdtype(SURROGATES[name]()(jnp.array([0, 1, -1])).dtype, jnp.floating)


def test_peak_values():
    assert float(jax.grad(surrogate.Sigmoid(alpha=4.0))(0.0)) == pytest.approx(1.0)
    assert float(jax.grad(surrogate.Arctan(alpha=2.0))(0.0)) == pytest.approx(1.0)
    assert float(jax.grad(surrogate.Gaussian(sigma=0.5))(0.0)) == pytest.approx(
        1 / (0.5 * math.sqrt(2 * math.pi))
    )
    assert float(jax.grad(surrogate.ReLU(alpha=0.3, width=1.0))(0.0)) == pytest.approx(0.3)
    assert float(jax.grad(surrogate.SuperSpike(beta=10.0))(0.1)) == pytest.approx(1 / 4)
    assert float(jax.grad(surrogate.Exponential(beta=2.0))(0.0)) == pytest.approx(1.0)
    assert float(jax.grad(surrogate.PiecewiseQuadratic(alpha=1.0))(0.5)) == pytest.approx(0.5)


def test_sharpness_is_differentiable_through_the_backward_pass():
    """The surrogate is a field of the model, so its parameter can be learned from second-order terms."""

    def slope_at(alpha, x):
        return jax.grad(lambda x: surrogate.Sigmoid(alpha=alpha)(x))(x)

    d_alpha = jax.grad(slope_at)(4.0, 0.0)
    assert float(d_alpha) == pytest.approx(0.25)


def test_surrogate_is_a_swappable_pytree_field():
    from diffbrain import zoo

    model = zoo.LIF()
    swapped = eqx.tree_at(lambda m: m.spike_fn, model, surrogate.Arctan())
    assert isinstance(swapped.spike_fn, surrogate.Arctan)
    assert isinstance(model.spike_fn, surrogate.Sigmoid)


@settings(max_examples=40, deadline=None)
@given(
    # XLA on CPU flushes subnormals to zero, so they are left out.
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(max_dims=3, max_side=5),
        elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=False),
    ),
    which=st.sampled_from(sorted(SURROGATES)),
)
def test_property_shapes_and_finiteness(x, which):
    spike = SURROGATES[which]()
    out = spike(x)
    grads = jax.grad(lambda v: spike(v).sum())(jnp.asarray(x))
    assert out.shape == x.shape and grads.shape == x.shape
    np.testing.assert_array_equal(out, (x >= 0).astype(np.float32))
    assert bool(jnp.all(jnp.isfinite(grads)))


@pytest.mark.parametrize("bad", [0.0, -4.0, math.nan, math.inf])
def test_sharpness_and_width_must_be_positive(name, bad):
    cls = SURROGATES[name]
    for field in (f.name for f in cls.__dataclass_fields__.values() if f.name != "h"):
        with pytest.raises(ValueError, match=f"`{field}` must be > 0"):
            cls(**{field: bad})


@pytest.mark.parametrize("h", [-0.1, 1.0, math.nan])
def test_multi_gaussian_side_lobe_weight_in_unit_interval(h):
    with pytest.raises(ValueError, match=r"`h`.*\[0, 1\)"):
        surrogate.MultiGaussian(h=h)
    surrogate.MultiGaussian(h=0.0)


def test_surrogate_parameters_get_no_gradient(name):
    """The surrogate shapes only the backward pass: the documented zero gradient of its own parameters."""
    spike = SURROGATES[name]()
    x = jnp.linspace(-2.0, 2.0, 9)
    grads = jax.grad(lambda s: jnp.sum(s(x)))(spike)
    assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(grads))
    input_grad = jax.grad(lambda v: jnp.sum(spike(v)))(x)
    assert float(jnp.abs(input_grad).max()) > 0.0


@pytest.mark.parametrize(("make", "field"), [(surrogate.Sigmoid, "alpha"), (surrogate.MultiGaussian, "h")])
def test_surrogate_parameters_must_be_scalars(make, field):
    """Review: ``Sigmoid(alpha=[4., 8.])`` ran forward, then its gradient failed to broadcast."""
    with pytest.raises(ValueError, match=rf"{make.__name__}: `{field}` must be a scalar"):
        make(**{field: [0.1, 0.2]})
