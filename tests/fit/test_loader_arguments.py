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
