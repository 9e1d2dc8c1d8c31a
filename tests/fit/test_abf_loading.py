"""`load_abf`: step amplitudes in pA whatever the command's unit, and errors that name the fix."""

import numpy as np
import pytest

from diffbrain.fit.loaders import load_abf

SAMPLES = "ephys-pyabf-samples"


def test_amplitudes_follow_the_command_unit(shared_data, tmp_path):
    """The same protocol with its command unit changed from pA to nA: the current and the step amplitudes
    are both 1000 times larger in pA (the amplitude stayed in nA)."""
    data = bytearray((shared_data / SAMPLES / "File_axon_5.abf").read_bytes())
    assert data[4196:4198] == b"pA"  # the DAC unit string of this file's protocol
    data[4196:4198] = b"nA"
    (tmp_path / "in_nA.abf").write_bytes(bytes(data))
    in_pa, in_na = load_abf(shared_data / SAMPLES / "File_axon_5.abf"), load_abf(tmp_path / "in_nA.abf")
    assert {r.meta["current_unit"] for r in in_na} == {"nA"}
    np.testing.assert_allclose(in_na.amplitudes, 1000 * in_pa.amplitudes)
    for recording in in_na:
        current = np.asarray(recording.current)
        assert recording.meta["amplitude"] == pytest.approx(current[np.argmax(np.abs(current))])


def test_a_missing_stimulus_file_is_named(shared_data, tmp_path):
    path = shared_data / SAMPLES / "171116sh_0017.abf"  # driven by 'sine sweep magnitude 20.abf'
    with pytest.raises(ValueError, match=r"'sine sweep magnitude 20\.abf'.*Pass stimulus_folder=<the folder"):
        load_abf(path)
    named = rf"'sine sweep magnitude 20\.abf'.*stimulus_folder='{tmp_path}' does not hold it"
    with pytest.raises(ValueError, match=named):
        load_abf(path, stimulus_folder=tmp_path)


def test_sweeps_must_be_a_sequence(shared_data):
    with pytest.raises(ValueError, match=r"`sweeps` must be a sequence .* got 3; pass sweeps=\[3\]"):
        load_abf(shared_data / SAMPLES / "File_axon_5.abf", sweeps=3)
    assert [r.meta["sweep"] for r in load_abf(shared_data / SAMPLES / "File_axon_5.abf", sweeps=[3])] == [3]


def test_sweeps_may_be_a_one_dimensional_integer_array(shared_data):
    """``sweeps=np.arange(3)`` reads sweeps 0, 1, 2 (it was refused with the advice sweeps=[array([0, 1,
    2])]); an array of floats is refused naming its dtype."""
    path = shared_data / SAMPLES / "File_axon_5.abf"
    assert [r.meta["sweep"] for r in load_abf(path, sweeps=np.arange(3))] == [0, 1, 2]
    with pytest.raises(
        ValueError, match=r"`sweeps` must hold integer sweep numbers, got an array of float64"
    ):
        load_abf(path, sweeps=np.asarray([0.0, 1.0]))
