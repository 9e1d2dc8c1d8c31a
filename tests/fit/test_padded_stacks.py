"""A stack padded to one length (`Cell.stack(pad=True)`) gives back its sweeps without the padding."""

import numpy as np
import pytest

from diffbrain import fit, zoo
from diffbrain.fit.recording import Cell, Recording


def sweeps(lengths=(30, 45, 60), dt=0.5) -> Cell:
    out = []
    for k, n in enumerate(lengths):
        t = np.arange(n) * dt
        voltage = -65.0 + 10 * np.sin(t) + 90.0 * (np.arange(n) == n - 5)  # one spike, 5 samples from the end
        out.append(Recording(dt, np.full(n, 100.0 * k), voltage, meta={"sweep": k}).with_detected_spikes())
    return Cell(out, "unequal")


def test_unstack_and_index_drop_the_padding():
    cell = sweeps()
    stack = cell.stack(pad=True)
    assert stack.n_samples == 60 and stack.meta["lengths"] == [30, 45, 60]
    for back in (stack.unstack(), [stack[k] for k in range(3)], [stack[k - 3] for k in range(3)]):
        assert [r.n_samples for r in back] == [30, 45, 60]
        for original, recording in zip(cell, back, strict=True):
            np.testing.assert_array_equal(np.asarray(recording.voltage), np.asarray(original.voltage))
            np.testing.assert_array_equal(np.asarray(recording.current), np.asarray(original.current))
            np.testing.assert_array_equal(recording.spike_times, original.spike_times)
            assert recording.duration == original.duration and recording.meta == original.meta
    with pytest.raises(IndexError):
        stack[3]


def test_a_sliced_or_resampled_padded_stack_unstacks_to_its_recorded_samples():
    stack = sweeps().stack(pad=True)
    assert [r.n_samples for r in stack.slice(5.0, 25.0).unstack()] == [20, 35, 40]
    assert [r.n_samples for r in stack.resample(0.25).unstack()] == [60, 90, 120]
    assert [len(r.spike_times) for r in stack.with_detected_spikes().unstack()] == [1, 1, 1]


def test_prepare_still_masks_the_padding():
    """`prepare` reads the stack's rows as stored, padding included, and masks it with meta['lengths']."""
    inputs, target = fit.prepare(zoo.LIF(), sweeps().stack(pad=True))
    assert inputs.shape == (60, 3)
    np.testing.assert_array_equal(np.asarray(target.mask).sum(0), [30, 45, 60])
