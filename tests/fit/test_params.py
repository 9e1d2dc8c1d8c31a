import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0), "V_rest": (-80.0, -50.0), "t_ref": (0.5, 5.0)}


@pytest.fixture
def free():
    return fit.free_params(zoo.LIF(), FREE)


def test_default_transforms_log_for_scales_logit_otherwise(free):
    assert free.names == ("g_L", "V_rest", "t_ref")
    assert free.transforms == ("log", "logit", "log")
    gif = fit.free_params(zoo.GIF(), {"a": (0.0, 0.1), "k1": (0.1, 1.0)})
    assert gif.transforms == ("logit", "log")


def test_round_trip_and_bounds(free):
    theta = jnp.array([[20.0, -65.0, 2.0], [5.001, -79.99, 4.999]])
    np.testing.assert_allclose(free.to_values(free.to_unconstrained(theta)), theta, rtol=1e-9)
    u = jnp.array([[-40.0, 0.0, 40.0], [1e3, -1e3, 3.0]])
    values = np.asarray(free.to_values(u))
    # strictly inside, even where σ(u) rounds to 0 or 1: a fitted value can be an explicit start again
    assert np.all(values > np.asarray(free.lower)) and np.all(values < np.asarray(free.upper))
    # the log transform is geometric: u = 0 is the geometric mean of the bounds
    assert float(free.to_values(jnp.zeros(3))[0]) == pytest.approx(np.sqrt(5.0 * 50.0))


def test_to_model_and_back(free):
    u = free.to_unconstrained(jnp.array([20.0, -60.0, 1.0]))
    model = free.to_model(zoo.astype(zoo.LIF(), jnp.float64), u)
    assert float(model.g_L) == pytest.approx(20.0) and float(model.V_rest) == pytest.approx(-60.0)
    np.testing.assert_allclose(free.from_model(model), u, rtol=1e-9)
    assert free.as_dict(u)["t_ref"] == pytest.approx(1.0)


def test_sampling_uniform_in_box_and_log_uniform(free):
    values = np.asarray(free.to_values(free.sample(jax.random.key(1), 4000)))
    assert np.all((values > np.asarray(free.lower)) & (values < np.asarray(free.upper)))
    assert np.mean(values[:, 1]) == pytest.approx(-65.0, abs=0.6)  # uniform: mean is the midpoint
    assert np.median(values[:, 0]) == pytest.approx(np.sqrt(250.0), rel=0.05)  # log-uniform: geometric


def test_vmap_over_starts(free):
    model = zoo.astype(zoo.LIF(), jnp.float64)
    g_L = jax.vmap(lambda u: free.to_model(model, u).g_L)(free.sample(jax.random.key(0), 5))
    assert g_L.shape == (5,)


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"does not have; its parameters are \[.*'g_L'"):
        fit.free_params(zoo.LIF(), {"gNa": (1.0, 2.0)})


@pytest.mark.parametrize(
    "free, match",
    [({"g_L": (5.0, 1.0)}, "lower < upper"), ({"g_L": 3.0}, "pair"), ({}, "empty")],
)
def test_bad_bounds(free, match):
    with pytest.raises(ValueError, match=match):
        fit.free_params(zoo.LIF(), free)


def test_log_transform_needs_positive_lower_bound():
    with pytest.raises(ValueError, match="'log' transform"):
        fit.free_params(zoo.LIF(), {"V_rest": (-80.0, -50.0)}, transforms={"V_rest": "log"})


def test_a_model_value_outside_the_box_is_clipped_into_it():
    """``from_model`` of a value below a log-transformed box is its lower edge, not NaN (GIF's ``a`` may be
    negative)."""
    free = fit.free_params(zoo.GIF(), {"a": (0.001, 0.02)})
    assert free.transforms == ("log",)
    for a, edge in ((-0.005, 0.001), (0.0, 0.001), (0.5, 0.02)):
        u = free.from_model(zoo.GIF(a=a))
        assert np.isfinite(u).all() and float(free.to_values(u)[0]) == pytest.approx(edge, rel=1e-5)


@pytest.mark.parametrize("u", [20.0, 30.0, -30.0, 1e3, -1e3])
def test_values_stay_strictly_inside_a_narrow_float64_box_and_a_float32_box(u):
    """Review: σ(u) kept 10⁻¹² from 0 and 1 still rounded onto a bound where 10⁻¹² of the box is below the
    values' resolution (a box 0.002 mV wide at −65 mV in float64; any box in float32)."""
    narrow = fit.free_params(zoo.LIF(), {"V_rest": (-65.001, -64.999)})
    value = float(narrow.to_values(jnp.asarray([u]))[0])
    assert -65.001 < value < -64.999
    single = fit.free_params(zoo.LIF(), FREE, dtype=jnp.float32)
    values = single.to_values(jnp.full(3, u, jnp.float32))
    assert values.dtype == jnp.float32
    assert np.all((values > single.lower) & (values < single.upper)), values


def test_a_box_without_a_value_inside_is_refused():
    """Bounds that round to neighbours (or to one value) in the dtype leave a fit nowhere to move."""
    with pytest.raises(ValueError, match=r"`free\['C'\]` = \(100.0, 100.0000001\) holds no float32 value"):
        fit.free_params(zoo.LIF(), {"C": (100.0, 100.0000001)}, dtype=jnp.float32)
    assert fit.free_params(zoo.LIF(), {"C": (100.0, 100.0000001)}).size == 1  # float64 has room


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (dict(free={"g_L": "15"}), ValueError, r"`free\['g_L'\]` must be a \(lower, upper\) pair"),
        (dict(free=FREE, transforms="log"), TypeError, r"`transforms` must map free parameters to 'log'"),
    ],
)
def test_a_string_for_bounds_or_transforms_is_refused_naming_it(arguments, error, match):
    """Review: ``"15"`` was read as the bounds (1, 5); ``transforms="log"`` failed inside ``dict``."""
    with pytest.raises(error, match=match):
        fit.free_params(zoo.LIF(), **arguments)


def test_default_bounds_dtype_follows_jax_precision_without_a_warning():
    """Outside float64 mode the default bounds are float32, silently: the default asked for nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with jax.enable_x64(False):
            single = fit.free_params(zoo.LIF(), FREE)
        with jax.enable_x64(True):
            double = fit.free_params(zoo.LIF(), FREE)
    assert single.lower.dtype == np.float32 and double.lower.dtype == np.float64
