"""Options of the gradient methods of the wrong type are refused naming the option (review s22: restart="no"
counted as true, max_iterations=2.5 ran or failed in NumPy, memory_size=2.5 failed in JAX, a JAX array as
Adam's learning rate raised "unhashable type")."""

import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo

FREE = {"g_L": (5.0, 50.0)}


def _fit(sweeps, method, options, **kwargs):
    return fit.fit(
        zoo.LIF(V_th=100.0), sweeps, free=FREE, method=method, budget=10, options=options, **kwargs
    )


@pytest.mark.parametrize("method", ["lbfgs", "lbfgsb"])
@pytest.mark.parametrize("restart", ["no", 0, None])
def test_restart_must_be_a_bool(silent_lif_sweeps, method, restart):
    with pytest.raises(ValueError, match=rf"`restart` must be True or False, got {restart!r}"):
        _fit(silent_lif_sweeps, method, {"restart": restart})


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("lbfgs", "max_iterations"),
        ("lbfgsb", "max_iterations"),
        ("adam", "max_iterations"),
        ("lbfgs", "memory_size"),
        ("lbfgs", "max_linesearch_steps"),
        ("lbfgsb", "min_restart"),
    ],
)
@pytest.mark.parametrize("value", [2.5, 3.0, True])
def test_counts_must_be_integers(silent_lif_sweeps, method, name, value):
    with pytest.raises(ValueError, match=rf"`{name}` must be an integer \(a count\), got {value!r}"):
        _fit(silent_lif_sweeps, method, {name: value})


@pytest.mark.parametrize(
    ("count", "flag"),
    [
        (np.int64(2), np.bool_(False)),
        (jnp.asarray(2), jnp.asarray(False)),
        (np.asarray(2), np.asarray(False)),
    ],
)
def test_integer_counts_and_flags_of_numpy_and_jax_are_taken(silent_lif_sweeps, count, flag):
    result = _fit(silent_lif_sweeps, "lbfgs", {"max_iterations": count, "restart": flag})
    assert result.starts[0].message == "max_iterations reached"


@pytest.mark.parametrize("rate", [jnp.asarray(0.05), np.float32(0.05), np.asarray(0.05)])
def test_adam_takes_a_learning_rate_given_as_an_array(silent_lif_sweeps, rate):
    plain = _fit(silent_lif_sweeps, "adam", {"learning_rate": float(rate)})
    assert _fit(silent_lif_sweeps, "adam", {"learning_rate": rate}).loss == plain.loss


@pytest.mark.parametrize("rate", ["0.05", True, [0.05], jnp.zeros(2)])
def test_adam_refuses_a_learning_rate_that_is_not_a_number(silent_lif_sweeps, rate):
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number > 0"):
        _fit(silent_lif_sweeps, "adam", {"learning_rate": rate})


@pytest.mark.parametrize("method", ["lbfgs", "lbfgsb"])
@pytest.mark.parametrize("tolerance", ["1e-3", [1e-3, 1.0], True, np.array([1e-3, 1.0]), np.complex128(1e-3)])
def test_tolerance_must_be_a_real_number(silent_lif_sweeps, method, tolerance):
    """Review s24: "1e-3" raised a bare TypeError from `>=`, an array "truth value is ambiguous", and True
    ran as a tolerance of 1."""
    with pytest.raises(ValueError, match="`tolerance` must be a real number"):
        _fit(silent_lif_sweeps, method, {"tolerance": tolerance})


@pytest.mark.parametrize("tolerance", [np.float32(1e-6), jnp.asarray(1e-6), 1e-6, np.inf])
def test_a_tolerance_of_numpy_or_jax_is_taken(silent_lif_sweeps, tolerance):
    assert _fit(silent_lif_sweeps, "lbfgs", {"tolerance": tolerance}).starts
