"""Loader and Cell errors name the argument or file at fault and the fix (`fit.loaders`, `Cell.select`)."""

import numpy as np
import pytest

from diffbrain.fit.loaders import bbp_l5pc_cell, load, load_ibw
from diffbrain.fit.recording import Cell, Recording


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "table.npz").write_text("t,i,v\n0,0,-70\n")  # a CSV saved under .npz
    np.save(tmp_path / "array.npy", np.zeros((10, 3)))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")  # a single .npy array
    with pytest.raises(ValueError, match=r"table\.npz' could not be read as NPZ: it is not an \.npz \(zip\)"):
        load(tmp_path / "table.npz")
    with pytest.raises(ValueError, match=r"array\.npz' could not be read as NPZ: it holds a single \.npy"):
        load(tmp_path / "array.npz")


def test_select_names_the_protocols_available():
    sweeps = [
        Recording(0.1, np.zeros(10), np.full(10, -70.0), meta={"protocol": name})
        for name in ("IDRest", "SpikeRec")
    ]
    with pytest.raises(ValueError, match=r"protocol='IDrest'; protocols available: \['IDRest', 'SpikeRec'\]"):
        Cell(sweeps, "C140201C").select(protocol="IDrest")


def test_a_data_set_folder_under_another_name(shared_data, tmp_path):
    copy = tmp_path / "my_bbp_copy"
    copy.symlink_to(shared_data / "ephys-bbp-sscx-l5pc")
    assert len(bbp_l5pc_cell(copy, "C060109A1-SR-C1", "SpikeRec")) == 1
    with pytest.raises(FileNotFoundError, match=r"holds no 'feature_extraction_config_2cells\.json'.*`root`"):
        bbp_l5pc_cell(tmp_path, "C060109A1-SR-C1")


def test_ibw_meta_is_one_dict_per_sweep(tmp_path):
    """Checked before any file is read: the paths need not exist."""
    voltage = [tmp_path / "v_ch1_1.ibw", tmp_path / "v_ch1_2.ibw"]
    current = [tmp_path / "i_ch0_1.ibw", tmp_path / "i_ch0_2.ibw"]
    with pytest.raises(ValueError, match=r"`meta` must be a sequence of dicts.*meta=\[\{\.\.\.\}\] \* 2"):
        load_ibw(voltage, current, meta={"cell": "B6"})
    with pytest.raises(ValueError, match=r"`meta` has 1 entries for 2 sweeps"):
        load_ibw(voltage, current, meta=[{"cell": "B6"}])


def test_unit_hints_name_what_the_loader_takes(tmp_path):
    """A trace in volts or a dt in seconds: a Recording built directly is told to multiply (or pass
    check_units=False), `load_npz` to store the unit or dt in ms in the file and `load_csv` to pass its
    unit or dt in ms; neither loader takes voltage_unit= or check_units= (the hints named both)."""
    from diffbrain.fit.loaders import load_csv, load_npz

    with pytest.raises(ValueError, match=r"likely in volts\. Multiply it by 1e3 \(or pass check_units=False"):
        Recording(0.1, np.zeros(5), np.full(5, -0.065))
    path = tmp_path / "volts.npz"
    np.savez(path, dt=0.1, current=np.full(5, 50.0), voltage=np.full(5, -0.065))
    with pytest.raises(
        ValueError,
        match=r"likely in volts\. Store the unit in the file \(np\.savez\(\.\.\., voltage_unit='V'\)\)",
    ):
        load_npz(path)
    np.savez(path, dt=0.1, current=np.full(5, 50.0), voltage=np.full(5, -0.065), voltage_unit="V")
    assert float(load_npz(path)[0].voltage[0]) == pytest.approx(-65.0)
    np.savez(path, dt=1e-4, current=np.full(5, 50.0), voltage=np.full(5, -65.0))
    with pytest.raises(ValueError, match=r"looks like seconds\. Store dt in ms") as error:
        load_npz(path)
    assert "check_units" not in str(error.value)
    (tmp_path / "i.csv").write_text("0,1e-10,1e-10\n")
    (tmp_path / "v.csv").write_text("0,-0.065,-0.064\n")
    with pytest.raises(ValueError, match=r"likely in volts\. Pass voltage_unit='V' to load_csv"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.1)
    (tmp_path / "v.csv").write_text("0,-65.0,-64.0\n")
    with pytest.raises(ValueError, match=r"likely in amperes\. Pass current_unit='A' to load_csv"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.1)
    with pytest.raises(ValueError, match=r"looks like seconds\. Pass load_csv's dt in ms"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=1e-4, current_unit="A")


def test_bbp_all_sweeps_loads_every_spikerec_file(shared_data):
    """The config lists one of each cell's six SpikeRec sweeps; ``all_sweeps=True`` loads the six files
    in the cell's folder, in recording order, the config's one among them."""
    for cell_id, listed in (("C060109A1-SR-C1", "411"), ("C080501B2-SR-C1", "1041")):
        assert [r.meta["sweep"] for r in bbp_l5pc_cell(shared_data, cell_id, "SpikeRec")] == [listed]
        every = bbp_l5pc_cell(shared_data, cell_id, "SpikeRec", all_sweeps=True)
        numbers = [int(r.meta["sweep"]) for r in every]
        assert len(every) == 6 and numbers == sorted(numbers) and int(listed) in numbers
        assert all(r.meta["voltage_unit"] != r.meta["current_unit"] for r in every)
    idrest = bbp_l5pc_cell(shared_data, "C060109A1-SR-C1", "IDrest", all_sweeps=True)
    assert [r.meta["sweep"] for r in idrest] == [
        r.meta["sweep"] for r in bbp_l5pc_cell(shared_data, "C060109A1-SR-C1")
    ]
    with pytest.raises(ValueError, match=r"The config's 'Step' lists files of other protocols"):
        bbp_l5pc_cell(shared_data, "C060109A1-SR-C1", "Step", all_sweeps=True)
