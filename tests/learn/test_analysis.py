from fractions import Fraction

import equinox as eqx
import jax
import numpy as np
import pytest

from diffbrain import learn, tasks
from diffbrain.learn import analysis


def test_lognormal_fit_recovers_known_parameters_and_ignores_absent_synapses():
    rng = np.random.default_rng(0)
    weights = np.exp(rng.normal(-3.0, 0.5, 20_000))
    weights[::4] = 0.0  # absent synapses
    fit = analysis.fit_lognormal(weights)
    assert fit.count == 15_000
    assert fit.mu == pytest.approx(-3.0, abs=0.02) and fit.sigma == pytest.approx(0.5, abs=0.01)


def test_lognormal_fit_refuses_an_empty_group():
    with pytest.raises(ValueError, match="at least two positive"):
        analysis.fit_lognormal(np.zeros(5))


def test_weight_groups_of_a_fresh_network_match_its_lognormal_initialisation():
    net = learn.EINetwork(40, 100, 2, key=jax.random.key(0), in_scale=0.03, rec_scale=0.005, connectivity=0.5)
    groups = analysis.weight_groups(net)
    mask = np.asarray(net.rec_mask)
    assert groups["input"].size == 40 * 100
    assert groups["E"].size + groups["I"].size == mask.sum()
    fits = analysis.weight_distributions(net)
    # drawn as scale·exp(N(0, 0.5²)): mu = log(scale), sigma = 0.5
    assert fits["input"].mu == pytest.approx(np.log(0.03), abs=0.03)
    assert fits["E"].mu == pytest.approx(np.log(0.005), abs=0.03)
    assert fits["I"].mu == pytest.approx(np.log(0.02), abs=0.05)
    for fit in fits.values():
        assert fit.sigma == pytest.approx(0.5, abs=0.03)


def test_weight_distributions_leave_groups_without_synapses_unfitted_and_name_a_diverged_one():
    all_excitatory = learn.EINetwork(10, 20, 2, key=jax.random.key(0), exc_fraction=1.0, connectivity=0.5)
    fits = analysis.weight_distributions(all_excitatory)
    assert fits["I"] is None and fits["E"].count > 2 and fits["input"].count == 10 * 20
    diverged = eqx.tree_at(lambda net: net.w_in, all_excitatory, all_excitatory.w_in.at[0, 0].set(np.nan))
    with pytest.raises(ValueError, match="the 'input' weights: 1 of 200 magnitudes are not finite"):
        analysis.weight_distributions(diverged)


def synthetic_spikes(persistent: bool):
    """Neurons 0-9 prefer class 0, 10-19 class 1, 20-29 are unselective: 40 Hz vs 5 Hz in the stimulus,
    in the delay 30 Hz on preferred trials if ``persistent`` (else 5 Hz), 5 Hz on the others; baseline 5 Hz.
    """
    rng = np.random.default_rng(1)
    T, B, n = 600, 200, 30
    labels = np.arange(B) % 2
    stimulus = (np.arange(T) >= 100) & (np.arange(T) < 300)
    delay = np.arange(T) >= 300
    preferred = (np.arange(n)[None] // 10) == labels[:, None]  # [B, n]; neurons 20-29 prefer none
    rate = np.full((T, B, n), 5.0)
    rate[stimulus] = np.where(preferred, 40.0, 5.0)
    rate[stimulus, :, 20:] = 20.0
    if persistent:
        rate[delay] = np.where(preferred, 30.0, 5.0)
    spikes = (rng.random((T, B, n)) < rate / 1000.0).astype(np.float32)
    return spikes, labels, stimulus, delay


@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_activity_finds_the_selective_populations_and_their_delay_rates(persistent):
    spikes, labels, stimulus, delay = synthetic_spikes(persistent)
    result = analysis.persistent_activity(spikes, labels, stimulus, delay, threshold=10.0)
    expected = np.zeros((2, 30), bool)
    expected[0, :10] = expected[1, 10:20] = True
    np.testing.assert_array_equal(result.selective, expected)
    np.testing.assert_allclose(result.preferred, 30.0 if persistent else 5.0, rtol=0.1)
    np.testing.assert_allclose(result.nonpreferred, 5.0, rtol=0.15)
    np.testing.assert_allclose(result.baseline, 5.0, rtol=0.2)


def test_persistent_activity_converts_spike_counts_to_hz_with_the_time_step():
    """The same spike trains stepped every 0.5 ms span half the time: every rate doubles (in Hz), so the
    selectivity threshold doubles with them and picks the same neurons."""
    spikes, labels, stimulus, delay = synthetic_spikes(True)
    per_ms = analysis.persistent_activity(spikes, labels, stimulus, delay, threshold=10.0)
    half_ms = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=0.5, threshold=20.0)
    np.testing.assert_array_equal(half_ms.selective, per_ms.selective)
    for got, expected in zip(half_ms[2:], per_ms[2:], strict=True):
        np.testing.assert_allclose(got, 2 * expected, rtol=1e-12)
    np.testing.assert_allclose(half_ms.preferred, 60.0, rtol=0.1)
    np.testing.assert_allclose(half_ms.nonpreferred, 10.0, rtol=0.15)
    np.testing.assert_allclose(half_ms.baseline, 10.0, rtol=0.2)


def test_persistent_activity_names_the_class_of_each_row():
    """With the decision tasks' labels 1 and 2 (and a class absent), row k is ``classes[k]``'s."""
    spikes, labels, stimulus, delay = synthetic_spikes(True)
    zero_based = analysis.persistent_activity(spikes, labels, stimulus, delay, threshold=10.0)
    np.testing.assert_array_equal(zero_based.classes, [0, 1])
    one_based = analysis.persistent_activity(spikes, labels + 1, stimulus, delay, threshold=10.0)
    np.testing.assert_array_equal(one_based.classes, [1, 2])
    for got, expected in zip(one_based[1:], zero_based[1:], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_persistent_activity_reports_nan_without_selective_neurons_and_checks_windows():
    spikes, labels, stimulus, delay = synthetic_spikes(False)
    result = analysis.persistent_activity(spikes, labels, stimulus, delay, threshold=100.0)
    assert not result.selective.any() and np.isnan(result.preferred).all()
    with pytest.raises(ValueError, match="stimulus"):
        analysis.persistent_activity(spikes, labels, stimulus[:-1], delay)


def test_persistent_activity_refuses_an_empty_delay_naming_it():
    """Review s27: PerceptualDecisionMaking's default delay_duration=0 leaves its delay window empty, and
    every delay rate was a silent NaN."""
    task = tasks.PerceptualDecisionMaking(dt=10.0)
    spikes, labels = np.ones((task.n_steps, 4, 3)), np.array([1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"the `delay` window is empty.*delay_duration > 0"):
        analysis.persistent_activity(spikes, labels, task.window("stimulus"), task.window("delay"), dt=10.0)


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ({"stimulus": np.zeros(20, bool)}, "the `stimulus` window is empty"),
        ({"baseline": np.zeros(20, bool)}, "the `baseline` window is empty .*, or None for the steps before"),
    ],
)
def test_persistent_activity_refuses_an_empty_window_naming_it(windows, message):
    """Review s27: an empty stimulus or baseline window gave NaN rates without a word (the default baseline,
    the steps before the stimulus, is empty for a stimulus from step 0: NaN as documented)."""
    spikes, labels = np.ones((20, 6, 3)), np.arange(6) % 2
    spikes[5:10, labels == 0] = 0.0
    steps = np.arange(20)
    windows = {"stimulus": (steps >= 5) & (steps < 10), "delay": steps >= 10} | windows
    with pytest.raises(ValueError, match=message):
        analysis.persistent_activity(spikes, labels, **windows)


def test_lognormal_fit_refuses_non_finite_magnitudes():
    with pytest.raises(ValueError, match="3 of 6 magnitudes are not finite"):
        analysis.fit_lognormal(np.array([0.1, np.nan, 0.2, np.inf, np.nan, 0.3]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, lab, base: (s[:, :, 0], lab, base), r"`spikes` must be \[T, B, n\]"),
        (lambda s, lab, base: (s, lab[:4], base), r"`labels` must be \[B\] with B = 6"),
        (lambda s, lab, base: (s, lab, base[:7]), r"`baseline` must be a \[T\] window with T = 20"),
    ],
)
def test_persistent_activity_checks_the_shapes_of_its_arrays(change, message):
    T, B = 20, 6
    spikes, labels, baseline = np.zeros((T, B, 3)), np.arange(B) % 2, np.arange(T) < 5
    windows = (np.arange(T) >= 5) & (np.arange(T) < 10), np.arange(T) >= 10
    spikes, labels, baseline = change(spikes, labels, baseline)
    with pytest.raises(ValueError, match=message):
        analysis.persistent_activity(spikes, labels, *windows, baseline=baseline)


@pytest.mark.parametrize(
    ("change", "name"),
    [
        *[({"dt": dt}, "dt") for dt in (-1.0, 0.0, np.nan, np.inf, True)],
        *[({"threshold": threshold}, "threshold") for threshold in (-5.0, np.nan, np.inf, "2")],
    ],
)
def test_persistent_activity_refuses_a_bad_time_step_or_threshold_naming_it(change, name):
    """Review s24: dt=-1 made every rate negative and selected the wrong neurons, NaN selected none, 0 raised
    a bare ZeroDivisionError."""
    spikes, labels, stimulus, delay = synthetic_spikes(True)
    with pytest.raises(ValueError, match=f"`{name}` must be a finite number"):
        analysis.persistent_activity(spikes, labels, stimulus, delay, **change)


def test_persistent_activity_takes_a_0d_array_time_step():
    """Review s24 of 0fa940b: the new check had refused dt=np.asarray(1.0), which worked before."""
    spikes, labels, stimulus, delay = synthetic_spikes(True)
    plain = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=1.0, threshold=10.0)
    as_array = analysis.persistent_activity(
        spikes, labels, stimulus, delay, dt=np.asarray(1.0), threshold=jax.numpy.asarray(10.0)
    )
    np.testing.assert_array_equal(as_array.preferred, plain.preferred)
    as_fraction = analysis.persistent_activity(spikes, labels, stimulus, delay, dt=Fraction(1), threshold=10)
    np.testing.assert_array_equal(as_fraction.preferred, plain.preferred)
    assert analysis.persistent_activity(spikes, labels, stimulus, delay, threshold=0.0).classes.tolist() == [
        0,
        1,
    ]
