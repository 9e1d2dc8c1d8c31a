"""`frozen_noise_split` uses the nine frozen-noise repeats, also when the 120 s training file is there."""

import numpy as np
import pytest

from diffbrain.fit import datasets
from diffbrain.fit.loaders import FrozenNoise
from diffbrain.fit.recording import Cell, Recording


def sweep(stimulus: int, number: int, **meta) -> Recording:
    """2 s at 1 ms of stimulus ``stimulus``'s noise current; the voltage spikes where the current is high."""
    current = 300.0 * np.random.default_rng(stimulus).standard_normal(2000)
    voltage = np.where(current > 450.0, 20.0, -70.0)
    return Recording(1.0, current, voltage, meta={"sweep": str(number), **meta})


def test_the_training_recording_is_not_a_repeat(monkeypatch):
    """With Cell3_Ger1Training in the folder, `pozzorini_frozen_noise` returns it as `train` and the nine
    repeats as `test`: the split still cuts its training segments from the repeats, which share one
    stimulus, and leaves the training recording (another stimulus) out."""
    repeats = [sweep(0, 1009 + r, cell="Cell3", protocol="frozen noise", repeat=r) for r in range(9)]
    with_training = FrozenNoise(Cell([sweep(1, 1008)], "Cell3"), Cell(repeats, "Cell3"), None)
    monkeypatch.setattr(datasets, "pozzorini_frozen_noise", lambda root, n_test: with_training)
    split = datasets.frozen_noise_split("unused", split=1000.0)  # the default n_train=4
    assert [r.meta["sweep"] for r in split.train] == ["1009", "1010", "1011", "1012"]
    assert [r.meta["sweep"] for r in split.repeats] == [str(1009 + r) for r in range(9)]
    assert split.test[0].meta["sweep"] == "1017"
    for repeat in split.repeats:
        np.testing.assert_array_equal(np.asarray(repeat.current), np.asarray(repeats[0].current))
    with pytest.raises(ValueError, match=r"n_train must be in \[1, 8\], got 9"):
        datasets.frozen_noise_split("unused", n_train=9, split=1000.0)


def test_a_folder_with_the_training_file(shared_data, tmp_path):
    """The shared folder's files, plus a stand-in for the training recording (the 10 s AEC sweep under the
    training file's name): the split is the one of the folder without it."""
    source = shared_data / "ephys-gif-pozzorini2015"
    folder = tmp_path / "ephys-gif-pozzorini2015"
    folder.mkdir()
    for path in source.glob("Cell3_Ger1*_ch*_*.ibw"):
        (folder / path.name).symlink_to(path)
    for channel in (2, 3):
        elec = source / f"Cell3_Ger1Elec_ch{channel}_1007.ibw"
        (folder / f"Cell3_Ger1Training_ch{channel}_1008.ibw").symlink_to(elec)
    split = datasets.frozen_noise_split(tmp_path, n_train=2, split=2_000.0)
    plain = datasets.frozen_noise_split(shared_data, n_train=2, split=2_000.0)
    assert [r.meta["file"] for r in split.repeats] == [
        r.meta["file"].replace(str(source), str(folder)) for r in plain.repeats
    ]
    assert len(split.repeats) == 9 and "Training" not in split.train[0].meta["file"]


@pytest.mark.parametrize(
    ("n_train", "split", "dt", "samples"), [(3, 1000.0, None, 333), (4, 1000.0, 0.3, 833)]
)
def test_training_segments_are_equally_long(monkeypatch, n_train, split, dt, samples):
    """``split`` ms that is no whole number of samples per segment (1000 ms / 3 at 1 ms; 1000 ms / 4 at
    0.3 ms) is cut on the sample grid: every segment has floor(split / (dt · n_train)) samples, so the
    segments stack and fit side by side (cut at linspace edges they differed by one sample)."""
    repeats = [sweep(0, 1009 + r, cell="Cell3", protocol="frozen noise", repeat=r) for r in range(9)]
    data = FrozenNoise(Cell(repeats[:8], "Cell3"), Cell(repeats[8:], "Cell3"), None)
    monkeypatch.setattr(datasets, "pozzorini_frozen_noise", lambda root, n_test: data)
    split_data = datasets.frozen_noise_split("unused", n_train=n_train, split=split, dt=dt)
    assert [r.n_samples for r in split_data.train] == [samples] * n_train
    step = split_data.train[0].dt
    assert [r.meta["t_start"] for r in split_data.train] == pytest.approx(
        [k * samples * step for k in range(n_train)]
    )
    for k, segment in enumerate(split_data.train):
        whole = np.asarray(split_data.repeats[k].voltage)
        np.testing.assert_array_equal(np.asarray(segment.voltage), whole[samples * k : samples * (k + 1)])
    assert split_data.train.stack().batch_shape == (n_train,)


def test_a_split_shorter_than_one_sample_per_segment_is_refused(monkeypatch):
    """``split`` = 3 ms at 1 ms holds 3 samples, fewer than one for each of ``n_train`` = 4 segments."""
    repeats = [sweep(0, 1009 + r, cell="Cell3", protocol="frozen noise", repeat=r) for r in range(9)]
    data = FrozenNoise(Cell(repeats[:8], "Cell3"), Cell(repeats[8:], "Cell3"), None)
    monkeypatch.setattr(datasets, "pozzorini_frozen_noise", lambda root, n_test: data)
    with pytest.raises(ValueError, match=r"split=3.0 ms holds fewer than n_train=4 samples at dt = 1 ms"):
        datasets.frozen_noise_split("unused", n_train=4, split=3.0)
    assert [r.n_samples for r in datasets.frozen_noise_split("unused", n_train=4, split=4.0).train] == [1] * 4
