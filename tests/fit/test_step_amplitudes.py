"""`step_amplitudes` (``meta["amplitude"]`` of load_csv and load_nwb): the step of each protocol in a file,
and of a measured current, whose noise and spike artefacts must not make the step."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from diffbrain.fit.loaders import bbp_l5pc_cell, load_abf, load_csv, load_nwb, step_amplitudes


def _square(level: float, on: int, off: int, n: int = 10_000) -> np.ndarray:
    current = np.zeros(n)
    current[on:off] = level
    return current


def test_two_protocols_of_one_length_in_an_nwb_file_keep_their_own_steps(tmp_path):
    """500 ms steps of 100/200/300 pA and two 3 ms pulses of 800/1000 pA, all 1 s long, in one NWB file:
    each protocol has its own step (the pulses' stretch had given the steps 0 pA: [0, 0, 0, 800, 1000])."""
    pynwb = pytest.importorskip("pynwb")
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = pynwb.NWBFile("test", "id", datetime(2020, 1, 1, tzinfo=UTC))
    electrode = nwb.create_icephys_electrode(name="e", description="", device=nwb.create_device("amp"))
    sweeps = [("long square", _square(a, 1000, 6000)) for a in (100.0, 200.0, 300.0)]
    sweeps += [("short pulse", _square(a, 7000, 7030)) for a in (800.0, 1000.0)]
    for k, (protocol, current) in enumerate(sweeps):
        common = dict(rate=1e4, electrode=electrode, gain=1.0, sweep_number=np.uint32(k))
        nwb.add_acquisition(
            CurrentClampSeries(
                name=f"sweep_{k}", data=np.full(10_000, -0.07), stimulus_description=protocol, **common
            )
        )
        nwb.add_stimulus(CurrentClampStimulusSeries(name=f"stim_{k}", data=current * 1e-12, **common))
    path = tmp_path / "two_protocols.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    cell = load_nwb(path)
    assert [r.meta["protocol"] for r in cell] == ["long square"] * 3 + ["short pulse"] * 2
    np.testing.assert_allclose(cell.amplitudes, [100.0, 200.0, 300.0, 800.0, 1000.0], atol=1e-6)
    currents = [current for _, current in sweeps]
    protocols = [protocol for protocol, _ in sweeps]
    assert step_amplitudes(currents, protocols=protocols) == [100.0, 200.0, 300.0, 800.0, 1000.0]
    # the 3 ms pulses are longer than half the 3 ms running median, which keeps them
    assert step_amplitudes(currents, dt=0.1, protocols=protocols) == [100.0, 200.0, 300.0, 800.0, 1000.0]


def test_a_step_shorter_than_the_running_median_is_still_found():
    """1 ms pulses at dt 0.1 ms vanish under the 3 ms running median: the unsmoothed currents give them."""
    assert step_amplitudes([_square(a, 7000, 7010) for a in (800.0, 1000.0)], dt=0.1) == [800.0, 1000.0]


def test_step_amplitudes_refuses_dt_or_protocols_of_another_count():
    with pytest.raises(ValueError, match="`protocols` has 1 entries for 2 currents"):
        step_amplitudes([np.zeros(5), np.ones(5)], protocols=["a"])
    with pytest.raises(ValueError, match="`dt` has 3 entries for 2 currents"):
        step_amplitudes([np.zeros(5), np.ones(5)], dt=[0.1, 0.1, 0.1])


@pytest.mark.parametrize(
    "cell_id, protocol",
    [
        ("C060109A1-SR-C1", "IDrest"),
        ("C060109A1-SR-C1", "IDthresh"),
        ("C060109A1-SR-C1", "APWaveform"),
        ("C080501B2-SR-C1", "IDthresh"),
        ("C080501B2-SR-C1", "APWaveform"),
    ],
)
def test_measured_currents_written_as_csv_give_the_configured_step(shared_data, tmp_path, cell_id, protocol):
    """The BBP cells' measured currents as CSV tables: load_csv's amplitude is the median over the config's
    stimulus window (bbp_l5pc_cell's) within 2 pA. The stretch where the sweeps differed most had been one
    artefact sample (C060109A1 IDthresh: 12 of 18 sweeps off by > 50 pA, APWaveform 18 of 24; C080501B2
    APWaveform sweep 19: -136 pA for 1417 pA)."""
    cell = bbp_l5pc_cell(shared_data, cell_id, protocol)
    for name, trace in (("i", "current"), ("v", "voltage")):
        pd.DataFrame([np.asarray(getattr(r, trace), float) for r in cell]).to_csv(tmp_path / f"{name}.csv")
    read = load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=float(cell[0].dt))
    configured = np.array([r.meta["amplitude"] for r in cell])
    np.testing.assert_allclose(read.amplitudes, configured, atol=2.0)


def test_abf_step_sweeps_written_as_csv_give_load_abfs_levels(shared_data, tmp_path):
    """Every step ABF sample's commands as CSV tables: load_csv's amplitude is load_abf's epoch level (the
    ramp protocols have no level to agree on)."""
    compared = 0
    for path in sorted((shared_data / "ephys-pyabf-samples").glob("*.abf")):
        try:
            abf = load_abf(path)
        except ValueError:  # a protocol whose waveform file is not in the folder
            continue
        if "ramp" in abf.meta["protocol"]:
            continue
        for name, trace in (("i", "current"), ("v", "voltage")):
            pd.DataFrame([np.asarray(getattr(r, trace), float) for r in abf]).to_csv(tmp_path / f"{name}.csv")
        read = load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=float(abf[0].dt))
        np.testing.assert_allclose(read.amplitudes, abf.amplitudes, atol=0.5, err_msg=str(path))
        compared += 1
    assert compared >= 7
