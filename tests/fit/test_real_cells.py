"""Held-out splits of the real-cell data sets and the repeat-reliability ceiling of Γ (`fit.datasets`)."""

import itertools

import numpy as np
import pytest

from diffbrain import fit
from diffbrain.fit import datasets
from diffbrain.fit.recording import Cell, Recording

# --- repeat reliability ------------------------------------------------------------------------------------


def test_reliability_of_identical_repeats_is_one():
    train = [12.0, 40.0, 77.5, 90.0]
    assert datasets.repeat_reliability([train, train, train], duration=100.0) == pytest.approx(1.0)


def test_reliability_by_hand():
    # a and b coincide fully (Γ = 1 both ways); c matches one of two spikes of each:
    # chance 2νΔ = 2·(2/100)·2 = 0.08, Γ = (1 − 0.08·2) / (½·4·(1 − 0.08)) = 0.84 / 1.84 in all four orders.
    a, b, c = [10.0, 50.0], [10.5, 50.0], [10.0, 80.0]
    expected = (2 * 1.0 + 4 * 0.84 / 1.84) / 6
    assert datasets.repeat_reliability([a, b, c], duration=100.0) == pytest.approx(expected)


def test_reliability_averages_both_orders():
    # unequal counts make Γ(i, j) ≠ Γ(j, i); the ceiling is their mean
    a, b = [10.0, 30.0, 50.0, 70.0], [10.0, 50.0]
    forward = fit.gamma_factor(a, b, 100.0)
    backward = fit.gamma_factor(b, a, 100.0)
    assert forward != pytest.approx(backward)
    assert datasets.repeat_reliability([a, b], duration=100.0) == pytest.approx((forward + backward) / 2)


def test_reliability_of_independent_trains_is_near_zero():
    rng = np.random.default_rng(0)
    trains = [np.sort(rng.uniform(0, 100_000.0, 1_000)) for _ in range(4)]  # 10 Hz Poisson, 100 s
    assert abs(datasets.repeat_reliability(trains, duration=100_000.0)) < 0.05


def test_reliability_needs_two_repeats():
    with pytest.raises(ValueError, match="at least 2"):
        datasets.repeat_reliability([[1.0]], duration=10.0)


def test_window_spikes():
    np.testing.assert_allclose(datasets.window_spikes([1.0, 5.0, 9.9, 10.0, 12.0], 5.0, 10.0), [0.0, 4.9])


# --- step protocols ----------------------------------------------------------------------------------------


def step_cell(levels=(50.0, 100.0, 150.0, 200.0, 250.0, 300.0), repeats=2, dt=0.5) -> Cell:
    """Noisy measured steps (on 100–300 ms of 400 ms) whose voltage spikes ``amplitude / 50`` times."""
    rng = np.random.default_rng(1)
    t = np.arange(800) * dt
    sweeps = []
    for k, (level, repeat) in enumerate(itertools.product(levels, range(repeats))):
        current = np.where((t >= 100) & (t < 300), level, -20.0) + rng.normal(0, 30.0, t.size)
        voltage = np.full(t.size, -70.0)
        for spike in np.linspace(120, 280, int(level // 50)):
            voltage[round(spike / dt)] = 20.0
        meta = {"sweep": k, "amplitude": level + rng.normal(0, 1.0), "holding": -20.0, "repeat": repeat}
        sweeps.append(Recording(dt, current, voltage, meta=meta))
    return Cell(sweeps, "synthetic", {"onoff": [100.0, 300.0]})


def test_idealised_steps_replace_the_measured_current():
    cell = step_cell()
    ideal = datasets.idealised_steps(cell)
    for measured, recording in zip(cell, ideal, strict=True):
        t = recording.t
        expected = np.where((t >= 100) & (t < 300), measured.meta["amplitude"], -20.0)
        np.testing.assert_array_equal(np.asarray(recording.current), expected)
        np.testing.assert_array_equal(np.asarray(recording.voltage), np.asarray(measured.voltage))


def test_a_sliced_sweep_keeps_its_step_window():
    """Slicing before or after idealising gives the same current: the sweep's window moves with the slice."""
    sweeps = [
        Recording(r.dt, r.current, r.voltage, meta=r.meta | {"onoff": [100.0, 300.0]}) for r in step_cell()
    ]
    cell = Cell(sweeps, "own windows")
    sliced_first = datasets.idealised_steps(Cell([r.slice(50.0, 250.0) for r in cell], "sliced"))
    idealised_first = [r.slice(50.0, 250.0) for r in datasets.idealised_steps(cell)]
    for a, b in zip(sliced_first, idealised_first, strict=True):
        assert a.meta["onoff"] == b.meta["onoff"] == [50.0, 250.0]
        np.testing.assert_array_equal(np.asarray(a.current), np.asarray(b.current))


def test_idealised_steps_name_the_sweep_without_levels():
    bare = Cell([Recording(0.1, np.zeros(10), np.full(10, -70.0), meta={"sweep": 7})], "bare")
    with pytest.raises(ValueError, match=r"sweep 7 .* needs meta 'holding'"):
        datasets.idealised_steps(bare)


def test_split_by_amplitude_holds_out_whole_levels():
    cell = step_cell()
    split = datasets.split_by_amplitude(cell, 3, window=(50.0, 350.0))
    # levels 0, 2 (round(2.5) = 2) and 5 of six train, one sweep each; the other three levels are held out
    np.testing.assert_allclose(split.train_levels, [50.0, 150.0, 300.0], atol=3.0)
    held_out = sorted({round(r.meta["amplitude"], -1) for r in split.test})
    assert held_out == [100.0, 200.0, 250.0]
    assert len(split.test) == 6 and split.test_levels == [[0, 1], [2, 3], [4, 5]]
    for level in split.test_levels:
        assert len({round(split.test[k].meta["amplitude"], -1) for k in level}) == 1
    for recording in [*split.train, *split.test]:
        assert recording.n_samples == 600 and recording.meta["t_start"] == 50.0
        assert len(recording.spike_times) == int(round(recording.meta["amplitude"], -1) // 50)
        assert np.all(recording.spike_times > 69.0) and np.all(
            recording.spike_times < 231.0
        )  # 120–280 ms, shifted


def test_split_by_amplitude_checks_n_train():
    with pytest.raises(ValueError, match=r"n_train must be in \[1, 5\]"):
        datasets.split_by_amplitude(step_cell(), 6)


# --- the shared data sets ----------------------------------------------------------------------------------


def test_bbp_split_and_its_ceiling(shared_data):
    cell = fit.bbp_l5pc_cell(shared_data, "C080501B2-SR-C1", "IDrest")
    split = datasets.split_by_amplitude(cell, 4, window=(500.0, 2900.0))
    np.testing.assert_allclose(split.train_levels, [184, 508, 833, 1158], atol=3)
    assert len(split.train) + len(split.test) == len(cell) - 4  # one repeat of each training level unused
    counts = [len(r.spike_times) for r in split.train]
    assert counts == sorted(counts) and counts[0] <= 2 and counts[-1] > 30
    # Two repeats of a 2 s DC step lose spike-time alignment after the first spikes: the repeat-to-repeat
    # Γ ceiling of this protocol is close to chance (measured 0.056), so spike counts carry the signal.
    trains = [[split.test[k].spike_times for k in level] for level in split.test_levels]
    reliability = np.nanmean([datasets.repeat_reliability(t, 2400.0) for t in trains])
    assert 0.0 < reliability < 0.2


def test_frozen_noise_split_holds_out_time_and_trial(shared_data):
    split = datasets.frozen_noise_split(shared_data, n_train=4, split=10_000.0)
    assert len(split.train) == 4 and len(split.test) == 1 and len(split.repeats) == 9
    assert {r.n_samples for r in split.train} == {25_000} and split.test_start == 10_000.0
    for k, segment in enumerate(split.train):  # segment k is [2.5k, 2.5(k + 1)) s of repeat k
        whole = np.asarray(split.repeats[k].voltage)
        np.testing.assert_array_equal(np.asarray(segment.voltage), whole[25_000 * k : 25_000 * (k + 1)])
    assert split.test[0].meta["file"] == split.repeats[8].meta["file"]
    assert split.test[0].meta["file"] not in {r.meta["file"] for r in split.train}
    end = split.test[0].duration
    trains = [datasets.window_spikes(r.spike_times, split.test_start, end) for r in split.repeats]
    assert all(100 < len(t) < 130 for t in trains)  # 220–236 spikes per 20 s repeat
    assert datasets.repeat_reliability(trains, end - split.test_start) == pytest.approx(0.775, abs=0.01)


def test_frozen_noise_split_resamples_after_detecting_spikes(shared_data):
    native = datasets.frozen_noise_split(shared_data, n_train=2, split=4_000.0)
    coarse = datasets.frozen_noise_split(shared_data, n_train=2, split=4_000.0, dt=0.5)
    assert {r.n_samples for r in coarse.train} == {4_000} and coarse.train[0].dt == 0.5
    for fine, resampled in zip(native.repeats, coarse.repeats, strict=True):
        np.testing.assert_array_equal(fine.spike_times, resampled.spike_times)  # found at 0.1 ms, kept
    with pytest.raises(ValueError, match="n_train"):
        datasets.frozen_noise_split(shared_data, n_train=9)
    with pytest.raises(ValueError, match="split"):
        datasets.frozen_noise_split(shared_data, split=20_000.0)


# --- the benchmark's scoring (diffbrain.bench.fit_cells) ---------------------------------------------------


def test_scores_of_the_true_and_a_silent_model():
    """On sweeps simulated from a model, that model scores Γ = 1 and no count error; a silent one Γ = 0
    and a count error of 1 — the model's spike grid and the recorded spike times are aligned."""
    import jax
    import jax.numpy as jnp

    from diffbrain import zoo
    from diffbrain.bench import fit_cells

    truth = zoo.astype(zoo.AdEx(), jnp.float64)
    current = np.asarray(
        zoo.stimulus.ou_current(jax.random.key(3), 4_000, 0.1, mean=1000.0, std=300.0, tau=3.0)
    )
    with jax.enable_x64(True):
        sweeps = fit.synthetic_sweeps(truth, np.stack([current, current[::-1]]), dt=0.1)
        case = fit_cells.CellCase("synthetic", Cell(sweeps[:1]), Cell(sweeps), 50.0, 1.0, 0.0)
        perfect = fit_cells.score(case, truth)
        silent = fit_cells.score(case, zoo.astype(zoo.AdEx(V_T=-20.0, delta_T=0.5), jnp.float64))
    assert min(len(s.spike_times[s.spike_times >= 50.0]) for s in sweeps) > 5
    assert perfect == {"heldout_gamma": pytest.approx(1.0), "spike_count_error": 0.0}
    assert silent["heldout_gamma"] == 0.0 and silent["spike_count_error"] == 1.0


def test_the_summary_of_a_run_without_the_data_is_empty(tmp_path):
    """Without the shared data every case gives skipped records, and the summary printed after `save` is an
    empty frame, not a KeyError."""
    from diffbrain.bench import fit_cells
    from diffbrain.bench.records import to_frame

    records = fit_cells.run(root=tmp_path / "absent")
    assert records and {record.status for record in records} == {"skipped"}
    assert fit_cells.summary(to_frame(records)).empty
