"""Half precision: `zoo.simulate` and `zoo.solve` refuse float16 and bfloat16 (whose results are wrong, not
just coarse), naming the argument that brought it; a model's `step` still runs in float16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo

T = 20
CURRENT = jnp.full(T, 500.0)  # weakly typed: follows the model's dtype


@pytest.mark.parametrize(
    ("model", "inputs", "dt", "state", "named"),
    [
        (zoo.astype(zoo.LIF(), jnp.float16), CURRENT, 0.1, None, r"the model's parameters \(float16\)"),
        (zoo.astype(zoo.LIF(), jnp.bfloat16), CURRENT, 0.1, None, r"the model's parameters \(bfloat16\)"),
        (zoo.LIF(), CURRENT.astype(jnp.float16), 0.1, None, r"`inputs` \(float16\)"),
        (zoo.LIF(), CURRENT, np.float16(0.1), None, r"`dt` \(float16\)"),
        (zoo.LIF(), CURRENT, jnp.bfloat16(0.1), None, r"`dt` \(bfloat16\)"),
        (zoo.LIF(), CURRENT, 0.1, zoo.astype(zoo.LIF(), jnp.float16).init_state(), r"`state` \(float16\)"),
    ],
    ids=["float16-model", "bfloat16-model", "float16-inputs", "float16-dt", "bfloat16-dt", "float16-state"],
)
def test_simulate_refuses_half_precision_naming_its_source(model, inputs, dt, state, named):
    """Review: a bfloat16 LIF fired 0 spikes instead of 12, a float16 HH 1 instead of 7, and a float16
    ``dt`` alone turned a float32 model's state float16 (its weakly typed parameters follow it)."""
    with pytest.raises(ValueError, match=rf"{named}.*half precision.*zoo\.astype\(model, jnp\.float32\)"):
        zoo.simulate(model, inputs, dt, state=state)


def test_a_half_precision_dt_is_refused_even_where_the_state_stays_float32():
    with pytest.raises(ValueError, match=r"`dt` \(float16\)"):
        zoo.simulate(zoo.LIF(), CURRENT.astype(jnp.float32), np.float16(0.1))


def test_half_precision_parameters_promoted_by_float32_inputs_run_in_float32():
    trace = zoo.simulate(zoo.astype(zoo.LIF(), jnp.float16), CURRENT.astype(jnp.float32), 0.1)
    assert trace.V.dtype == trace.t.dtype == jnp.float32


def _step_through(model, inputs, dt):
    """``model.step`` over ``inputs`` in a scan: V and spikes (the path a half-precision model still has)."""

    def advance(state, current):
        state, spike = model.step(state, current, dt)
        return state, (state.V, spike)

    return jax.lax.scan(advance, model.init_state(), inputs)[1]


def test_gif_step_in_float16_has_finite_gradients_at_its_defaults():
    """With a fixed switch at |x| = 10⁻³ exprel's gradient was inf in float16 (GIF's b·dt = 10⁻³)."""
    model = zoo.astype(zoo.GIF(), jnp.float16)

    def mean_voltage(model):
        V, _ = _step_through(model, jnp.full(2000, 1.5, jnp.float16), 0.1)
        return V.astype(jnp.float32).mean()

    grads = jax.grad(mean_voltage)(model)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(grads))


def test_adex_step_fires_in_float16():
    """The exponent's cap keeps ~10¹⁰ of headroom below overflow, which float16 (6.6·10⁴) does not have:
    the cap was e^−11.9 there and the cell never fired."""
    current = jnp.full(5000, 1000.0)  # 500 ms at 1 nA
    counts = [
        int(_step_through(zoo.astype(zoo.AdEx(), dtype), current.astype(dtype), 0.1)[1].sum())
        for dtype in (jnp.float16, jnp.float32)
    ]
    assert counts[1] == 17 and abs(counts[0] - counts[1]) <= 2
