"""Unit hints of the loaders point to a remedy that works: the argument that set the unit, or the unit the
file's layout fixes."""

import numpy as np
import pytest

from diffbrain.fit import loaders
from diffbrain.fit.loaders import load_abf, load_ibw, load_npz


@pytest.fixture
def unitless_ibw(monkeypatch):
    """Igor waves read without their header's unit: the data stay in volts and amperes as stored."""
    read = loaders._read_ibw
    monkeypatch.setattr(loaders, "_read_ibw", lambda path: read(path)._replace(unit=""))


def _bbp_sweep(shared_data):
    folder = shared_data / "ephys-bbp-sscx-l5pc" / "C060109A1-SR-C1"
    voltage = sorted(folder.glob("X_IDrest_ch1_*.ibw"))[0]
    return voltage, voltage.with_name(voltage.name.replace("_ch1_", "_ch0_"))


def test_a_headerless_igor_wave_in_volts_is_told_to_pass_voltage_unit(shared_data, unitless_ibw):
    """The unit came from voltage_unit='mV', so the fix is voltage_unit='V' (the hint had said to convert
    the trace and build the Recording by hand); likewise current_unit='A' for amperes."""
    voltage, current = _bbp_sweep(shared_data)
    with pytest.raises(
        ValueError,
        match=r"likely in volts\. The header of 'X_IDrest_ch1_\d+\.ibw' has no unit: "
        r"pass voltage_unit='V' to load_ibw\.",
    ):
        load_ibw(voltage, current, voltage_unit="mV", current_unit="A")
    with pytest.raises(
        ValueError,
        match=r"likely in amperes\. The header of 'X_IDrest_ch0_\d+\.ibw' has no "
        r"unit: pass current_unit='A' to load_ibw\.",
    ):
        load_ibw(voltage, current, voltage_unit="V", current_unit="pA")
    assert float(load_ibw(voltage, current, voltage_unit="V", current_unit="A")[0].voltage[0]) < -60.0


def test_an_igor_wave_whose_header_names_a_wrong_unit_is_blamed_on_the_file(shared_data, monkeypatch):
    read = loaders._read_ibw
    monkeypatch.setattr(
        loaders, "_read_ibw", lambda path: read(path)._replace(unit="mV" if "_ch1_" in path.name else "A")
    )
    voltage, current = _bbp_sweep(shared_data)
    with pytest.raises(ValueError, match=r"The file's voltage unit \(meta\['voltage_unit'\]\) does not fit"):
        load_ibw(voltage, current)


def test_an_npz_table_of_columns_in_volts_is_told_to_write_millivolts(tmp_path):
    """[T, 3] columns hold mV and pA: storing voltage_unit='V' (the old hint) makes the file match no
    layout, so the hint says to write the values in mV or pA."""
    path = tmp_path / "columns.npz"
    t = np.arange(1000) * 1e-4
    np.savez(path, cellA_step_1=np.stack([t, np.full(1000, 50.0), np.full(1000, -0.065)], 1))
    with pytest.raises(
        ValueError,
        match=r"likely in volts\. This layout holds the voltage in mV and stores no "
        r"unit: write the voltage in mV",
    ) as error:
        load_npz(path)
    assert "np.savez(..., voltage_unit" not in str(error.value)
    np.savez(path, cellA_step_1=np.stack([t, np.full(1000, 50e-12), np.full(1000, -65.0)], 1))
    with pytest.raises(ValueError, match=r"likely in amperes\. This layout holds the current in pA"):
        load_npz(path)


def test_a_qsnmc_challenge_a_file_in_volts_is_told_to_write_millivolts(tmp_path):
    path = tmp_path / "challengeA.npz"
    np.savez(
        path,
        current_pA=np.full((1, 1, 50), 50.0),
        voltage_mV=np.full((1, 1, 50), -0.065),
        stimulus_ids=np.array([1]),
    )
    with pytest.raises(ValueError, match=r"likely in volts\. This layout holds the voltage in mV"):
        load_npz(path)


def test_an_abf_command_in_amperes_is_blamed_on_the_command_argument(shared_data):
    """load_abf(command=...) in amperes: the hint names `command` (it had blamed the file's current unit)."""
    path = shared_data / "ephys-pyabf-samples" / "18711001.abf"
    n = load_abf(path, sweeps=[3])[0].n_samples
    with pytest.raises(
        ValueError,
        match=r"likely in amperes\. load_abf's `command` is in pA: pass "
        r"command=<the waveform in A> \* 1e12\.",
    ) as error:
        load_abf(path, sweeps=[3], command=np.full(n, 3e-11))
    assert "meta['current_unit']" not in str(error.value)
