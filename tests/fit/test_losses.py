import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import fit, zoo
from diffbrain.fit.losses import first_spike_latency, near_spikes


def _target(voltage, spikes, dt=1.0):
    return fit.Target(voltage=jnp.asarray(voltage, float), spikes=jnp.asarray(spikes, float), dt=dt)


def test_voltage_mse_whole_trace_and_points():
    target = _target([[0.0], [0.0], [0.0], [0.0], [0.0]], np.zeros((5, 1)))
    V = jnp.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    assert float(fit.VoltageMSE()(V, None, target)) == pytest.approx((1 + 4 + 9 + 16 + 25) / 5)
    # three evenly spaced points: samples 0, 2, 4
    assert float(fit.VoltageMSE(n_points=3)(V, None, target)) == pytest.approx((1 + 9 + 25) / 3)


def test_subthreshold_mse_masks_around_spikes():
    spikes = np.zeros((10, 1))
    spikes[4] = 1
    target = _target(np.zeros((10, 1)), spikes)
    V = jnp.arange(10.0)[:, None]
    # before = 1 ms, after = 2 ms at dt = 1 ms: samples 3..6 are left out
    kept = [0, 1, 2, 7, 8, 9]
    loss = fit.SubthresholdMSE(before=1.0, after=2.0)(V, None, target)
    assert float(loss) == pytest.approx(np.mean(np.square(kept)))
    assert np.asarray(near_spikes(jnp.asarray(spikes), 1, 2))[:, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]


def test_van_rossum_one_extra_spike_is_a_half():
    n, dt, tau = 20_000, 0.01, 2.0
    data, model = np.zeros((n, 1)), np.zeros((n, 1))
    model[100] = 1
    value = fit.VanRossum(tau=tau)(None, jnp.asarray(model), _target(np.zeros((n, 1)), data, dt))
    # (1/τ)∫ e^{−2t/τ} dt = 1/2; the grid sum is (dt/τ)/(1 − e^{−2dt/τ})
    assert float(value) == pytest.approx(dt / tau / (1 - np.exp(-2 * dt / tau)), rel=1e-6)
    assert float(value) == pytest.approx(0.5, rel=1e-2)
    for last in (n - 50, n - 1):  # near the end and on the last sample: the tail is counted
        model[:], model[last] = 0, 1
        at_end = fit.VanRossum(tau=tau)(None, jnp.asarray(model), _target(np.zeros((n, 1)), data, dt))
        assert float(at_end) == pytest.approx(float(value), rel=1e-6)


def test_van_rossum_is_zero_on_itself_symmetric_and_the_closed_form_for_two_spikes():
    """Trains with one spike each, Δ = 1 ms apart: D² = 1 − e^{−Δ/τ} in the continuum, 2·one·(1 − e^{−Δ/τ})
    on the grid (one ≈ ½: a lone spike's grid value); the cross term carries the sign."""
    n, dt, tau, shift = 4000, 0.1, 2.0, 10
    a, b = np.zeros((n, 1)), np.zeros((n, 1))
    a[1000], b[1000 + shift] = 1, 1
    loss = fit.VanRossum(tau=tau)
    assert float(loss(None, jnp.asarray(a), _target(np.zeros((n, 1)), a, dt))) == 0.0
    ab = float(loss(None, jnp.asarray(a), _target(np.zeros((n, 1)), b, dt)))
    ba = float(loss(None, jnp.asarray(b), _target(np.zeros((n, 1)), a, dt)))
    assert ab == pytest.approx(ba, rel=1e-12)
    one = dt / tau / (1 - np.exp(-2 * dt / tau))  # one lone spike, on the grid
    assert ab == pytest.approx(2 * one * (1 - np.exp(-shift * dt / tau)), rel=1e-9)


def test_van_rossum_counts_the_tail_at_each_padded_sweeps_end():
    """A padded sweep ends at its last unmasked sample: the tail starts there, not at the padding's end."""
    n, dt, tau = 400, 0.1, 2.0
    data, model = np.zeros((n, 2)), np.zeros((n, 2))
    model[149, 0] = model[399, 1] = 1  # each on its sweep's last recorded sample
    mask = np.ones((n, 2))
    mask[150:, 0] = 0  # sweep 0 recorded for 150 samples
    target = fit.Target(voltage=jnp.zeros((n, 2)), spikes=jnp.asarray(data), dt=dt, mask=jnp.asarray(mask))
    one = dt / tau / (1 - np.exp(-2 * dt / tau))  # one unmatched spike, on the grid
    assert float(fit.VanRossum(tau=tau)(None, jnp.asarray(model), target)) == pytest.approx(one, rel=1e-6)


def test_spike_count_and_first_spike_latency():
    data, model = np.zeros((10, 2)), np.zeros((10, 2))
    data[[3, 6], 0] = 1
    model[5, 0] = 1
    data[2, 1] = 1  # sweep 1: the model never fires, latency counts as the duration (10 ms)
    target = _target(np.zeros((10, 2)), data)
    assert float(fit.SpikeCount()(None, jnp.asarray(model), target)) == pytest.approx((1 + 1) / 2)
    np.testing.assert_allclose(first_spike_latency(jnp.asarray(model), 1.0), [5.0, 10.0])
    loss = fit.FirstSpikeLatency()(None, jnp.asarray(model), target)
    assert float(loss) == pytest.approx(((5 - 3) ** 2 + (10 - 2) ** 2) / 2)


def test_first_spike_latency_is_in_ms_at_a_time_step_other_than_one_ms():
    """The data of `test_spike_count_and_first_spike_latency` stepped every 0.5 ms: every latency halves."""
    data, model = np.zeros((10, 2)), np.zeros((10, 2))
    data[[3, 6], 0] = 1
    model[5, 0] = 1
    data[2, 1] = 1  # sweep 1: the model never fires, latency counts as the duration (10 steps: 5 ms)
    np.testing.assert_allclose(first_spike_latency(jnp.asarray(model), 0.5), [2.5, 5.0])
    np.testing.assert_allclose(first_spike_latency(jnp.asarray(data), 0.5), [1.5, 1.0])
    np.testing.assert_allclose(
        first_spike_latency(jnp.asarray(model), 0.5, jnp.array([4.0, 7.0])), [2.5, 7.0]
    )
    loss = fit.FirstSpikeLatency()(None, jnp.asarray(model), _target(np.zeros((10, 2)), data, dt=0.5))
    assert float(loss) == pytest.approx(((2.5 - 1.5) ** 2 + (5.0 - 1.0) ** 2) / 2)


def test_losses_add_and_scale():
    target = _target(np.zeros((4, 1)), np.zeros((4, 1)))
    V = jnp.ones((4, 1))
    combined = fit.VoltageMSE() + 0.5 * fit.SpikeCount()
    spikes = jnp.asarray([[1.0], [1.0], [0.0], [0.0]])
    assert float(combined(V, spikes, target)) == pytest.approx(1.0 + 0.5 * 4.0)


def test_gamma_identical_trains_is_one():
    times = np.sort(np.random.default_rng(0).uniform(0, 1000, 20))
    assert fit.gamma_factor(times, times, duration=1000.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad", [{"duration": np.nan}, {"window": np.nan}, {"duration": np.inf}, {"window": 0.0}]
)
def test_gamma_refuses_a_duration_or_window_that_is_not_finite_and_positive(bad):
    with pytest.raises(ValueError, match="must be finite and > 0"):
        fit.gamma_factor([10.0], [10.0], **({"duration": 100.0} | bad))


def test_gamma_small_known_case():
    # data 3 spikes, model 2 spikes within 2 ms of data spikes 1 and 2; duration 100 ms
    data, model = [10.0, 30.0, 60.0], [11.0, 28.5]
    rate = 2 / 100.0  # model spikes per ms
    expected = (2 - 2 * rate * 2.0 * 3) / (0.5 * (3 + 2) * (1 - 2 * rate * 2.0))
    assert fit.gamma_factor(model, data, duration=100.0) == pytest.approx(expected)
    # one model spike may match one data spike only
    assert fit.gamma_factor([10.0], [9.0, 11.0], duration=100.0) == pytest.approx(
        (1 - 2 * 0.01 * 2 * 2) / (0.5 * 3 * (1 - 2 * 0.01 * 2))
    )


def test_gamma_independent_poisson_trains_is_near_zero():
    rng = np.random.default_rng(42)
    duration, rate = 100_000.0, 0.01  # ms, spikes per ms (10 Hz)
    gammas = [
        fit.gamma_factor(
            np.sort(rng.uniform(0, duration, rng.poisson(rate * duration))),
            np.sort(rng.uniform(0, duration, rng.poisson(rate * duration))),
            duration,
        )
        for _ in range(5)
    ]
    assert abs(np.mean(gammas)) < 0.03


@pytest.mark.parametrize(("rate_hz", "window"), [(500.0, 2.0), (250.0, 2.0), (100.0, 5.0), (300.0, 2.0)])
def test_gamma_is_nan_when_the_model_fires_at_or_above_one_over_two_windows(rate_hz, window):
    """2νΔ ≥ 1: no chance correction exists (𝒩 = 1 − 2νΔ ≤ 0); NaN, never a flipped sign or a ZeroDivision."""
    duration = 1000.0  # ms
    model = np.arange(int(rate_hz * duration / 1000.0)) * 1000.0 / rate_hz
    data = model[::50]  # every data spike matched
    assert np.isnan(fit.gamma_factor(model, data, duration, window))
    below = model[: int(0.9 * duration / (2 * window))]  # 2νΔ = 0.9: defined again
    assert np.isfinite(fit.gamma_factor(below, data, duration, window))


_LOSSES = [
    fit.VoltageMSE(),
    fit.VoltageMSE(n_points=7),
    fit.SubthresholdMSE(before=2.0, after=3.0),
    fit.VanRossum(tau=4.0),
    fit.SpikeCount(),
    fit.FirstSpikeLatency(),
]


@pytest.mark.parametrize("loss", _LOSSES, ids=repr)
def test_a_masked_padding_counts_as_if_each_sweep_ended_at_its_length(loss):
    """Sweeps of 40 and 25 samples padded to 40 (the padding holds junk: spikes, large errors) give the
    pooled value of the unpadded sweeps: per-sample losses pool their samples, per-sweep ones average."""
    rng = np.random.default_rng(1)
    lengths, n, dt = (40, 25), 40, 0.5
    V, data_V = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    spikes, data = np.zeros((n, 2)), np.zeros((n, 2))
    spikes[[5, 30], 0], data[[8, 20], 0] = 1, 1
    spikes[[28, 33], 1], data[[15, 30], 1] = 1, 1  # sweep 1: samples 25+ are padding
    V[25:, 1], data_V[25:, 1] = 100.0, -100.0
    mask = (np.arange(n)[:, None] < np.asarray(lengths)).astype(float)
    padded = fit.Target(jnp.asarray(data_V), jnp.asarray(data), dt, mask=jnp.asarray(mask))
    value = float(loss(jnp.asarray(V), jnp.asarray(spikes), padded))
    parts = [
        (V[:k, [s]], spikes[:k, [s]], _target(data_V[:k, [s]], data[:k, [s]], dt))
        for s, k in enumerate(lengths)
    ]
    if isinstance(loss, (fit.SubthresholdMSE, fit.VoltageMSE)) and loss != fit.VoltageMSE(n_points=7):
        # pooled over samples: Σ (kept error) / Σ (kept samples)
        kept = [
            1.0 - np.asarray(near_spikes(t.spikes, 4, 6))
            if isinstance(loss, fit.SubthresholdMSE)
            else np.ones(v.shape)
            for v, _, t in parts
        ]
        errors = [
            np.sum(m * (v - np.asarray(t.voltage)) ** 2) for m, (v, _, t) in zip(kept, parts, strict=True)
        ]
        expected = sum(errors) / sum(m.sum() for m in kept)
    else:  # a mean over sweeps of each sweep's own loss
        expected = np.mean([float(loss(jnp.asarray(v), jnp.asarray(s), t)) for v, s, t in parts])
    assert value == pytest.approx(expected, rel=1e-12)
    unmasked = float(loss(jnp.asarray(V), jnp.asarray(spikes), _target(data_V, data, dt)))
    assert unmasked != pytest.approx(expected, rel=1e-3)  # the padding would change it


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fit.VoltageMSE(n_points=0), "`n_points` must be None"),
        (lambda: fit.VanRossum(tau=0.0), "`tau` must be a positive finite"),
        (lambda: fit.VanRossum(tau=float("nan")), "`tau` must be a positive finite"),
        (lambda: fit.SubthresholdMSE(before=-1.0), r"`before` \(-1.0 ms\) and `after` \(5.0 ms\)"),
        # review s24: a fractional n_points read between samples (NaN past a padded sweep's end), True
        # compared sample 0 only; strings failed inside NumPy
        (lambda: fit.VoltageMSE(n_points=2.5), "`n_points` must be None"),
        (lambda: fit.VoltageMSE(n_points=True), "`n_points` must be None"),
        (lambda: fit.SubthresholdMSE(before="2"), "must be finite numbers >= 0"),
        (lambda: fit.VanRossum(tau="10"), "`tau` must be a positive finite"),
        (lambda: fit.VanRossum(tau=True), "`tau` must be a positive finite"),
        (lambda: fit.SubthresholdMSE(before=True), "must be finite numbers >= 0"),
        (lambda: fit.SubthresholdMSE(after="3"), "must be finite numbers >= 0"),
    ],
)
def test_loss_settings_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_repeat_reliability_leaves_out_pairs_without_a_gamma():
    """A repeat firing at 500 Hz has no Γ as the 'model' of a pair (2νΔ ≥ 1); only the defined pairs count."""
    slow, fast = [10.0, 50.0], list(np.arange(0.0, 100.0, 2.0))
    defined = [fit.gamma_factor(slow, fast, 100.0), fit.gamma_factor(slow, slow, 100.0)]
    assert np.isnan(fit.gamma_factor(fast, slow, 100.0))
    r = fit.repeat_reliability([slow, fast, slow], duration=100.0)
    # ordered pairs: (s,f) (s,s) (f,s) (f,s) (s,s) (s,f); the two (f,s) are NaN
    assert r == pytest.approx(np.mean([defined[0], defined[1], defined[1], defined[0]]))


def test_masked_voltage_mse_pools_samples_and_its_n_points_form_weighs_sweeps_equally():
    """The two masked forms as the docstring states them: pooled samples, and per-sweep N points."""
    rng = np.random.default_rng(0)
    lengths = [40, 10]
    V, Vh = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    mask = (np.arange(40)[:, None] < np.array(lengths)[None]).astype(float)
    target = fit.Target(voltage=jnp.asarray(Vh), spikes=jnp.zeros((40, 2)), dt=0.1, mask=jnp.asarray(mask))
    squared = [(V[:n, s] - Vh[:n, s]) ** 2 for s, n in enumerate(lengths)]
    pooled = sum(e.sum() for e in squared) / sum(lengths)
    assert float(fit.VoltageMSE()(V, None, target)) == pytest.approx(pooled, rel=1e-12)
    assert pooled != pytest.approx(np.mean([e.mean() for e in squared]), rel=1e-3)
    index = [np.round(np.linspace(0, n - 1, 5)).astype(int) for n in lengths]
    per_sweep = np.mean([e[i].mean() for e, i in zip(squared, index, strict=True)])
    assert float(fit.VoltageMSE(n_points=5)(V, None, target)) == pytest.approx(per_sweep, rel=1e-12)


def test_subthreshold_mse_refuses_windows_that_cover_every_sample():
    """Review s24: with windows around the spikes covering every sample the loss was 0 for any parameters,
    and a fit stopped at its first point reporting a perfect fit."""
    with jax.enable_x64(True):
        sweeps = fit.synthetic_sweeps(zoo.LIF(g_L=20.0), np.full((1, 1000), 700.0), dt=0.1)  # ~8 ms ISIs
        free = {"g_L": (5.0, 50.0)}
        with pytest.raises(ValueError, match="cover every sample, so no subthreshold voltage is left"):
            fit.fit(zoo.LIF(), sweeps, free=free, loss=fit.SubthresholdMSE(before=10.0, after=20.0), budget=2)
        quiet = fit.synthetic_sweeps(zoo.LIF(g_L=20.0), np.full((1, 1000), 0.0), dt=0.1)  # no spikes
        with pytest.raises(ValueError, match="cell 1: SubthresholdMSE: the windows"):
            loss = fit.SubthresholdMSE(before=10.0, after=20.0)
            fit.fit_cells(zoo.LIF(), [quiet, sweeps], free=free, loss=loss, budget=2)
        assert fit.fit(zoo.LIF(), sweeps, free=free, loss=fit.SubthresholdMSE(), budget=2).loss > 0
        # review s24 of f502e67: in a sum, such a term adds a constant that the other terms still fit
        combined = fit.SubthresholdMSE(before=10.0, after=20.0) + 0.1 * fit.SpikeCount()
        with pytest.warns(UserWarning, match="Its term adds a constant; the other terms still fit") as caught:
            assert fit.fit(zoo.LIF(), sweeps, free=free, loss=combined, budget=4).loss > 0
        assert [warning.filename for warning in caught] == [__file__]  # at the caller, once
        with pytest.warns(UserWarning, match="^cell 1: SubthresholdMSE") as caught:
            fit.fit_cells(zoo.LIF(), [quiet, sweeps], free=free, loss=combined, budget=2)
        assert [warning.filename for warning in caught] == [__file__]
        with pytest.raises(ValueError, match="cover every sample"):  # no term of nonzero weight can compare
            nothing = fit.SubthresholdMSE(before=10.0, after=20.0) + 0.0 * fit.VoltageMSE()
            fit.fit(zoo.LIF(), sweeps, free=free, loss=nothing, budget=2)
        with pytest.raises(ValueError, match="every term of the loss has weight 0"):
            fit.fit(zoo.LIF(), sweeps, free=free, loss=0.0 * fit.VoltageMSE(), budget=2)


@pytest.mark.parametrize("array", [np.asarray, jnp.asarray])
def test_loss_settings_given_as_0d_arrays_are_taken_as_numbers(array):
    """Review s24 of f502e67: the type checks had refused 0-d arrays that worked before."""
    assert fit.VoltageMSE(n_points=array(5)).n_points == 5
    assert fit.SubthresholdMSE(before=array(2.0), after=array(4)).before == 2.0
    assert fit.VanRossum(tau=array(10.0)).tau == 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused by name, with no "JAX array set as static" warning first
        with pytest.raises(ValueError, match="`n_points` must be None"):
            fit.VoltageMSE(n_points=array(2.5))
        with pytest.raises(ValueError, match="`tau` must be a positive finite"):
            fit.VanRossum(tau=array([10.0, 20.0]))
    with pytest.raises(ValueError, match="`tau` must be a positive finite"):  # a traced value is refused
        jax.jit(lambda tau: fit.VanRossum(tau=tau).tau)(10.0)
