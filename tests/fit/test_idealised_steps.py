"""`idealised_steps` flattens single-step currents only; BBP sweeps come in recording order."""

import numpy as np
import pytest

from diffbrain import fit
from diffbrain.fit import datasets
from diffbrain.fit.recording import Cell, Recording


def measured(current: np.ndarray, sweep: int = 0, dt: float = 0.5, **meta) -> Recording:
    """A sweep whose measured current is ``current`` plus 30 pA of amplifier noise, on 100–300 ms."""
    noisy = current + np.random.default_rng(sweep).normal(0, 30.0, current.size)
    meta = {"sweep": sweep, "holding": -20.0, "onoff": [100.0, 300.0], **meta}
    return Recording(dt, noisy, np.full(current.size, -70.0), meta=meta)


T = np.arange(800) * 0.5  # ms


def test_a_ramp_is_refused_not_flattened():
    """APThreshold's −20 → 500 pA ramp over the window is not one step: flattening it to its median
    (250 pA) would drive a model with the wrong current."""
    ramp = np.where((T >= 100) & (T < 300), np.interp(T, [100, 300], [-20.0, 500.0]), -20.0)
    cell = Cell([measured(ramp, sweep=254, amplitude=240.0, protocol="APThreshold")], "ramp")
    with pytest.raises(ValueError, match=r"sweep 254 of 'ramp' \(protocol 'APThreshold'\) is not one step"):
        datasets.idealised_steps(cell)


def test_a_second_pulse_after_the_window_is_refused():
    """SpikeRec-like: the window covers the first pulse; a second, long one outside it is not holding."""
    pulses = np.where(((T >= 100) & (T < 300)) | (T >= 330), 1000.0, -20.0)
    cell = Cell([measured(pulses, sweep=411, amplitude=1000.0, protocol="SpikeRec")], "pulses")
    with pytest.raises(ValueError, match=r"sweep 411 .* outside the window \[100.0, 300.0\] ms"):
        datasets.idealised_steps(cell)


def test_a_noisy_step_is_flattened():
    step = np.where((T >= 100) & (T < 300), 150.0, -20.0)
    ideal = datasets.idealised_steps(Cell([measured(step, amplitude=150.0)], "step"))
    np.testing.assert_array_equal(np.asarray(ideal[0].current), step)


def test_bbp_levels_only_for_single_step_protocols(shared_data):
    """APThreshold (a ramp) and SpikeRec (two pulses) get no holding/amplitude, so `idealised_steps`
    refuses them; the step protocols of both cells pass its check."""
    for cell_id in ("C060109A1-SR-C1", "C080501B2-SR-C1"):
        for protocol in ("APThreshold", "SpikeRec"):
            cell = fit.bbp_l5pc_cell(shared_data, cell_id, protocol)
            assert not any("holding" in r.meta or "amplitude" in r.meta for r in cell)
            with pytest.raises(ValueError, match="needs meta 'holding'"):
                datasets.idealised_steps(cell)
        for protocol in ("IDrest", "IDthresh", "IV", "APWaveform"):
            cell = fit.bbp_l5pc_cell(shared_data, cell_id, protocol)
            assert len(datasets.idealised_steps(cell)) == len(cell)


def test_bbp_sweeps_in_recording_order(shared_data):
    """C080501B2's config lists sweeps 1000…1007 before 937 (sorted as strings); the Cell is in recording
    order, so each amplitude level's first sweep, which `split_by_amplitude` trains on, is its first
    repeat."""
    cell = fit.bbp_l5pc_cell(shared_data, "C080501B2-SR-C1", "IDrest")
    numbers = [int(r.meta["sweep"]) for r in cell]
    assert numbers == sorted(numbers) and numbers[0] == 937
    levels = datasets.amplitude_levels(cell)
    assert all(group == sorted(group) for group in levels)
    train = datasets.split_by_amplitude(cell, 4).train
    assert [r.meta["sweep"] for r in train] == ["937", "942", "947", "952"]


def test_amplitude_levels_list_repeats_in_recording_order():
    """The later repeat of a level may measure a lower amplitude: the group still starts with the first."""
    sweeps = [
        Recording(0.1, np.zeros(10), np.full(10, -70.0), meta={"sweep": k, "amplitude": a})
        for k, a in enumerate([100.0, 200.0, 99.0, 199.0])
    ]
    assert datasets.amplitude_levels(Cell(sweeps, "repeats")) == [[0, 2], [1, 3]]
