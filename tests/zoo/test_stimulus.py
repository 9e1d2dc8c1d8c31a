"""Stimulus generators: step protocols, OU current, Poisson trains."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.zoo import stimulus

jax.config.update("jax_enable_x64", True)


def test_steps_builds_the_protocol():
    current = stimulus.steps([1.5, 0.0, -1.5], [20.0, 180.0, 20.0], 0.1)
    assert current.shape == (2200,)
    assert float(current[:200].min()) == 1.5 and float(current[200:2000].max()) == 0.0
    assert float(current[-1]) == -1.5
    # NumPy and JAX arrays of levels, and a single level of 0 (once read as "empty")
    for levels in (np.array([1.5, 0.0, -1.5]), jnp.array([1.5, 0.0, -1.5])):
        np.testing.assert_array_equal(stimulus.steps(levels, np.array([20.0, 180.0, 20.0]), 0.1), current)
    np.testing.assert_array_equal(stimulus.steps(np.array([0.0]), [1.0], 0.5), [0.0, 0.0])


def test_steps_rejects_bad_protocols():
    with pytest.raises(ValueError, match="multiples of dt"):
        stimulus.steps([1.0], [0.25], 0.1)
    with pytest.raises(ValueError, match="equally long"):
        stimulus.steps([1.0, 2.0], [10.0], 0.1)
    with pytest.raises(ValueError, match="`dt`"):
        stimulus.steps([1.0], [10.0], 0.0)


def test_ou_current_statistics():
    key = jax.random.key(0)
    x = np.asarray(stimulus.ou_current(key, 20_000, 0.5, mean=100.0, std=20.0, tau=5.0, shape=(20,)))
    assert x.mean() == pytest.approx(100.0, abs=1.5)
    assert x.std() == pytest.approx(20.0, rel=0.05)
    centred = x - x.mean()
    lag = 10  # = tau / dt
    autocorrelation = (centred[:-lag] * centred[lag:]).mean() / centred.var()
    assert autocorrelation == pytest.approx(np.exp(-1.0), abs=0.05)
    same = stimulus.ou_current(key, 100, 0.5, mean=0.0, std=1.0, tau=5.0)
    np.testing.assert_array_equal(same, stimulus.ou_current(key, 100, 0.5, mean=0.0, std=1.0, tau=5.0))


def test_poisson_rate_and_errors():
    spikes = stimulus.poisson(jax.random.key(1), 40.0, 10_000, 1.0, shape=(100,))
    assert spikes.dtype == jnp.bool_ and spikes.shape == (10_000, 100)
    assert float(spikes.mean()) * 1000.0 == pytest.approx(40.0, rel=0.03)
    with pytest.raises(ValueError, match="lower dt"):
        stimulus.poisson(jax.random.key(1), 2000.0, 10, 1.0)
    with pytest.raises(ValueError, match="`rate`"):
        stimulus.poisson(jax.random.key(1), -1.0, 10, 1.0)


def test_stimuli_trace_through_jit_vmap_and_grad():
    key = jax.random.key(2)

    def ou(tau, std):
        return stimulus.ou_current(key, 200, 0.5, mean=1.0, std=std, tau=tau)

    np.testing.assert_allclose(jax.jit(ou)(5.0, 2.0), ou(5.0, 2.0), rtol=1e-12)
    eps = 1e-6
    for argnum, point in ((0, (5.0, 2.0)), (1, (5.0, 2.0))):
        shifted = list(point)
        shifted[argnum] += eps
        numeric = (ou(*shifted).sum() - ou(*point).sum()) / eps
        assert float(jax.grad(lambda *a: ou(*a).sum(), argnums=argnum)(*point)) == pytest.approx(
            float(numeric), rel=1e-4
        )
    rates = jnp.array([10.0, 200.0])
    batched = jax.vmap(lambda rate: stimulus.poisson(key, rate, 500, 1.0))(rates)
    np.testing.assert_array_equal(batched[1], stimulus.poisson(key, 200.0, 500, 1.0))
    with pytest.raises(Exception, match="exceeds one spike per step"):
        jax.block_until_ready(jax.jit(lambda rate: stimulus.poisson(key, rate, 10, 1.0))(2000.0))


def test_steps_trace_through_jit_vmap_and_grad():
    """Review: `steps` read `levels` through NumPy, so jit, vmap and grad over a level raised."""

    def protocol(amplitude):
        return stimulus.steps([0.0, amplitude, 0.0], [1.0, 2.0, 1.0], 0.5)

    np.testing.assert_array_equal(jax.jit(protocol)(1.5), [0.0, 0.0, 1.5, 1.5, 1.5, 1.5, 0.0, 0.0])
    np.testing.assert_array_equal(jax.vmap(protocol)(jnp.array([1.0, 2.0]))[:, 3], [1.0, 2.0])
    assert float(jax.grad(lambda a: (protocol(a) * jnp.arange(8.0)).sum())(1.5)) == 2 + 3 + 4 + 5
    assert stimulus.steps(np.array([1.0], np.float32), [1.0], 0.5).dtype == jnp.float32
    assert stimulus.steps([1, 2], [1.0, 1.0], 0.5).dtype == jnp.result_type(float)


@pytest.mark.parametrize("n_steps", [-5, 2.5, True])
def test_bad_step_counts_are_named(n_steps):
    with pytest.raises(ValueError, match="`n_steps`"):
        stimulus.ou_current(jax.random.key(0), n_steps, 0.1, mean=0.0, std=1.0, tau=5.0)
    with pytest.raises(ValueError, match="`n_steps`"):
        stimulus.poisson(jax.random.key(0), 10.0, n_steps, 0.1)


def test_ou_current_gives_each_neuron_its_own_noise():
    """Array `mean`, `std` and `tau` define a population whose columns are independent OU processes."""
    mean, std, tau = np.array([100.0, 200.0, 300.0]), np.array([10.0, 20.0, 40.0]), np.array([2.0, 5.0, 5.0])
    x = np.asarray(stimulus.ou_current(jax.random.key(3), 20_000, 0.5, mean=mean, std=std, tau=tau))
    assert x.shape == (20_000, 3)
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=0.15 * std.max())
    np.testing.assert_allclose(x.std(axis=0), std, rtol=0.1)
    correlation = np.corrcoef(x.T)
    assert np.all(np.abs(correlation[np.triu_indices(3, 1)]) < 0.15)
    lag = 4  # 2 ms: e^{-1} for the first column, e^{-0.4} for the others
    centred = x - x.mean(axis=0)
    autocorrelation = (centred[:-lag] * centred[lag:]).mean(axis=0) / centred.var(axis=0)
    np.testing.assert_allclose(autocorrelation, np.exp(-2.0 / tau), atol=0.06)
    scalar_mean = np.asarray(stimulus.ou_current(jax.random.key(3), 20_000, 0.5, mean=0.0, std=std, tau=5.0))
    assert np.all(np.abs(np.corrcoef(scalar_mean.T)[np.triu_indices(3, 1)]) < 0.15)


def test_stimuli_take_an_int_shape_broadcast_with_their_parameters():
    key = jax.random.key(4)
    assert stimulus.ou_current(key, 10, 0.1, mean=0.0, std=1.0, tau=5.0, shape=3).shape == (10, 3)
    assert stimulus.poisson(key, 10.0, 10, 0.1, shape=3).shape == (10, 3)
    broadcast = stimulus.ou_current(key, 10, 0.1, mean=jnp.zeros(3), std=1.0, tau=5.0, shape=(2, 1))
    assert broadcast.shape == (10, 2, 3)
    with pytest.raises(ValueError, match=r"`shape` 4 does not broadcast.*`mean`"):
        stimulus.ou_current(key, 10, 0.1, mean=jnp.zeros(3), std=1.0, tau=5.0, shape=4)
    with pytest.raises(ValueError, match=r"`shape` \(2,\) does not broadcast.*`rate`"):
        stimulus.poisson(key, jnp.full(3, 10.0), 10, 0.1, shape=(2,))


def test_durations_are_whole_steps_to_a_fraction_of_a_step():
    """Half a step is refused at any length; float rounding of whole multiples is accepted."""
    with pytest.raises(ValueError, match="multiples of dt"):
        stimulus.steps([1.0, 2.0], [100_000.04, 1.0], 0.1)  # 1,000,000.4 steps
    with pytest.raises(ValueError, match="multiples of dt"):
        stimulus.steps([1.0], [100_000.05], 0.1)
    assert stimulus.steps([1.0], [1000.0], 0.1).shape == (10_000,)
    assert stimulus.steps([1.0], [0.1 * 3], 0.1).shape == (3,)
    float32 = stimulus.steps([1.0, 2.0], [np.float32(100_000.0), np.float32(0.3)], np.float32(0.1))
    assert float32.shape == (1_000_003,)


@pytest.mark.parametrize("duration", [np.nan, np.inf, -1.0])
def test_bad_durations_are_named(duration):
    with pytest.raises(ValueError, match="`durations`"):
        stimulus.steps([1.0], [duration], 0.1)


@pytest.mark.parametrize("rate", [-50.0, np.nan], ids=["negative", "nan"])
def test_poisson_refuses_a_traced_rate_below_zero_or_nan(rate):
    """Review: a traced rate was checked only for rate·dt > 1, so -50 Hz or NaN silently gave no spikes."""
    count = jax.jit(lambda r: stimulus.poisson(jax.random.key(0), r, 100, 0.1).sum())
    with pytest.raises(Exception, match=r"poisson: `rate` must be >= 0 Hz"):
        jax.block_until_ready(count(rate))
    assert int(count(0.0)) == 0


@pytest.mark.parametrize(
    ("tau", "std", "named"),
    [
        (-1.0, 1.0, "`tau`"),
        (0.0, 1.0, "`tau`"),
        (np.nan, 1.0, "`tau`"),
        (np.inf, 1.0, "`tau`"),
        (5.0, -1.0, "`std`"),
    ],
    ids=["negative-tau", "zero-tau", "nan-tau", "infinite-tau", "negative-std"],
)
def test_ou_current_refuses_a_bad_traced_tau_or_std(tau, std, named):
    """Review: a traced tau skipped the positivity check; tau = -1 ms returned NaN current."""
    noise = jax.jit(lambda t, s: stimulus.ou_current(jax.random.key(0), 100, 0.1, mean=0.0, std=s, tau=t))
    with pytest.raises(Exception, match=rf"ou_current: {named} must be"):
        jax.block_until_ready(noise(tau, std))
    assert bool(jnp.all(jnp.isfinite(noise(5.0, 1.0))))


def test_ou_current_takes_a_traced_zero_std():
    """A traced ``std`` of 0 is allowed (as a concrete one is): the current stays at ``mean``."""
    noise = jax.jit(lambda s: stimulus.ou_current(jax.random.key(0), 100, 0.1, mean=3.0, std=s, tau=5.0))
    np.testing.assert_array_equal(np.asarray(jax.block_until_ready(noise(0.0))), np.full(100, 3.0))
