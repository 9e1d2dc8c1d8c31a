"""Recordings, cells and loaders: real shared data sets, synthetic round-trips, every validation error."""

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffbrain.fit.loaders import (
    bbp_l5pc_cell,
    load,
    load_abf,
    load_csv,
    load_ibw,
    load_npz,
    load_nwb,
    paper_hh_steps,
    pozzorini_frozen_noise,
    qsnmc2007,
)
from diffbrain.fit.recording import Cell, Recording, detect_spikes


def rest_mV(rec: Recording, before_ms: float) -> float:
    """Median voltage before the stimulus: the resting (or held) potential."""
    return float(np.median(np.asarray(rec.voltage)[: round(before_ms / rec.dt)]))


def spike_counts(cell: Cell) -> np.ndarray:
    return np.asarray([len(r.with_detected_spikes().spike_times) for r in cell])


def synthetic(n: int = 200, dt: float = 0.1, **meta) -> Recording:
    t = np.arange(n) * dt
    return Recording(dt, np.where(t > 5, 100.0, 0.0), -65.0 + 3 * np.sin(t), meta=meta or None)


# --- real data -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell_id", "lowest", "highest", "holding"),
    [("C060109A1-SR-C1", 157, 710, -26), ("C080501B2-SR-C1", 184, 1158, -141)],
)
def test_bbp_idrest_steps(shared_data, cell_id, lowest, highest, holding):
    cell = bbp_l5pc_cell(shared_data, cell_id, "IDrest")
    assert len(cell) == 32 and cell.name == cell_id
    assert {r.n_samples for r in cell} == {12000} and {r.dt for r in cell} == {0.25}
    # Amplitudes from PROVENANCE.md: absolute step levels; the second cell keeps its current on ch1.
    assert cell.amplitudes.min() == pytest.approx(lowest, abs=3)
    assert cell.amplitudes.max() == pytest.approx(highest, abs=3)
    assert np.median([r.meta["holding"] for r in cell]) == pytest.approx(holding, abs=3)
    assert all(-90 < rest_mV(r, 700) < -40 for r in cell)
    counts = spike_counts(cell)
    order = np.argsort(cell.amplitudes)
    assert counts.max() < 150 and counts[order[-4:]].mean() > counts[order[:4]].mean() > 0
    spikes = cell[int(order[-1])].with_detected_spikes().spike_times
    assert spikes.min() > 700 and spikes.max() < 2800  # inside the step (700–2700 ms)
    stacked = cell.select(low=300, high=500).stack()
    assert stacked.current.shape[1] == 12000 and stacked.dt.shape == stacked.current.shape[:1]


def test_bbp_other_protocols(shared_data):
    iv = bbp_l5pc_cell(shared_data, "C080501B2-SR-C1", "IV")
    assert len(iv) == 30 and iv[0].dt == 0.25
    assert iv.amplitudes.min() == pytest.approx(-516, abs=5) and iv.amplitudes.max() == pytest.approx(
        70, abs=5
    )
    assert spike_counts(iv).sum() == 0  # subthreshold
    ap = bbp_l5pc_cell(shared_data, "C060109A1-SR-C1", "APWaveform")
    assert len(ap) == 24 and ap[0].dt == pytest.approx(0.01)
    sahp = bbp_l5pc_cell(shared_data, "C060109A1-SR-C1", "sAHP")  # not in the config: found by name
    assert len(sahp) == 6 and sahp[0].dt == 0.5 and -90 < rest_mV(sahp[0], 100) < -40
    with pytest.raises(ValueError, match="cell_id 'nope'"):
        bbp_l5pc_cell(shared_data, "nope")


def test_ibw_channels_found_by_name_and_unit(shared_data):
    folder = shared_data / "ephys-bbp-sscx-l5pc" / "C080501B2-SR-C1"
    from_voltage = load(folder / "exp_IDrest_ch0_1000.ibw")[0]  # ch0 is the voltage for this cell
    from_current = load(folder / "exp_IDrest_ch1_1000.ibw")[0]
    assert from_voltage.meta["file"] == from_current.meta["file"] == str(folder / "exp_IDrest_ch0_1000.ibw")
    np.testing.assert_array_equal(from_voltage.current, from_current.current)
    assert from_voltage.meta["current_unit"] == "A" and from_voltage.meta["voltage_unit"] == "V"
    swapped = load_ibw(folder / "exp_IDrest_ch1_1000.ibw", folder / "exp_IDrest_ch0_1000.ibw")[0]
    np.testing.assert_array_equal(swapped.voltage, from_voltage.voltage)  # roles follow the header units
    with pytest.raises(ValueError, match=r"'exp_IDrest_ch0_1001\.ibw' was given as the current.*unit is 'V'"):
        load_ibw(folder / "exp_IDrest_ch0_1000.ibw", folder / "exp_IDrest_ch0_1001.ibw")


def test_bluepyefe_ibw_in_pA_and_mV(shared_data):
    folder = shared_data / "ephys-bluepyefe-testdata"
    b6 = load_ibw(sorted((folder / "B6").glob("*_Ch3_*.ibw")), name="B6")
    assert len(b6) == 5 and b6[0].n_samples == 12000 and b6[0].dt == 0.25
    assert b6[0].meta["current_unit"] == "pA" and b6[0].meta["voltage_unit"] == "mV"
    levels = [np.median(np.asarray(r.current)[2800:10800]) for r in b6]
    np.testing.assert_allclose(sorted(levels), [106, 163, 225, 284, 341], atol=3)
    assert np.median(np.asarray(b6[0].current)[:2800]) == pytest.approx(-12.5, abs=2)
    assert all(-90 < rest_mV(r, 700) < -40 for r in b6)
    counts = spike_counts(b6)
    assert counts.min() == pytest.approx(26, abs=3) and counts.max() == pytest.approx(89, abs=3)
    b95 = load(next((folder / "B95").glob("*_Ch0_*.ibw")))
    assert len(b95) == 1 and spike_counts(b95)[0] == pytest.approx(9, abs=1)


def test_nwb_current_clamp(shared_data):
    cell = load_nwb(shared_data / "ephys-bluepyefe-testdata" / "hippocampus-portal" / "99111002.nwb")
    assert len(cell) == 16 and {r.n_samples for r in cell} == {7168} and {r.dt for r in cell} == {0.1}
    # Stimulus −2…+1 nA in 200 pA steps (stored in amperes).
    np.testing.assert_allclose(np.sort(cell.amplitudes), np.arange(-2000, 1001, 200), atol=1e-3)
    assert cell[0].meta["voltage_unit"] == "volts" and cell[0].meta["protocol"] == "Step"
    assert np.all(np.abs(cell.stack().voltage) < 200)  # mV, not V or µV


def write_nwb(path, stimulus_start_s=0.0, *, table=True, izero=True, stimulus_of_second=False):
    """A two-sweep NWB file: a 100 pA step (50–150 ms of 200 ms, 10 kHz), then a sweep with no stimulus
    (an `IZeroClampSeries` if ``izero``, else a `CurrentClampSeries`), paired through the
    intracellular-recordings table (``table``) or by sweep number."""
    from datetime import UTC, datetime

    pynwb = pytest.importorskip("pynwb")
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries, IZeroClampSeries

    nwb = pynwb.NWBFile("test", "id", datetime(2020, 1, 1, tzinfo=UTC))
    electrode = nwb.create_icephys_electrode(name="e", description="", device=nwb.create_device("amp"))
    common = dict(rate=1e4, electrode=electrode, gain=1.0)
    step = np.r_[np.zeros(500), np.full(1000, 100e-12), np.zeros(500)]
    stimulus = CurrentClampStimulusSeries(
        name="stim0", data=step, starting_time=stimulus_start_s, sweep_number=np.uint32(0), **common
    )
    response = CurrentClampSeries(
        name="resp0", data=np.full(2000, -0.065), sweep_number=np.uint32(0), **common
    )
    resting = (IZeroClampSeries if izero else CurrentClampSeries)(
        name="resp1", data=np.full(2000, -0.07), sweep_number=np.uint32(1), **common
    )
    if table:
        nwb.add_intracellular_recording(electrode=electrode, stimulus=stimulus, response=response)
        nwb.add_intracellular_recording(electrode=electrode, response=resting)
    else:
        nwb.add_stimulus(stimulus)
        nwb.add_acquisition(response)
        nwb.add_acquisition(resting)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


@pytest.mark.parametrize("table", [True, False])
def test_nwb_zero_current_sweeps_read_with_no_stimulus(tmp_path, table):
    cell = load_nwb(write_nwb(tmp_path / "izero.nwb", table=table))
    step, resting = cell  # in the file's order (the table's, or by name)
    assert [step.meta["sweep"], resting.meta["sweep"]] == ["resp0", "resp1"]
    np.testing.assert_allclose(np.asarray(step.current)[[499, 500, 1499, 1500]], [0, 100, 100, 0])
    np.testing.assert_array_equal(np.asarray(resting.current), 0.0)
    np.testing.assert_allclose(np.asarray(resting.voltage), -70.0)
    assert resting.meta["current_unit"] is None and resting.meta["amplitude"] == 0.0


def test_nwb_refuses_a_current_clamp_sweep_without_stimulus(tmp_path):
    with pytest.raises(ValueError, match=r"'resp1' has no stimulus .* the injected current is unknown"):
        load_nwb(write_nwb(tmp_path / "nostim.nwb", izero=False))


@pytest.mark.parametrize("table", [True, False])
def test_nwb_refuses_a_stimulus_that_starts_after_its_response(tmp_path, table):
    with pytest.raises(ValueError, match="response starts at 0 ms but its stimulus 'stim0' at 50 ms"):
        load_nwb(write_nwb(tmp_path / "late.nwb", 0.05, table=table))
    assert len(load_nwb(write_nwb(tmp_path / "close.nwb", 0.00004, table=table))) == 2  # < dt/2: same samples


def test_abf_steps_and_command(shared_data):
    folder = shared_data / "ephys-pyabf-samples"
    cell = load(folder / "171116sh_0018.abf")
    assert len(cell) == 17 and cell[0].n_samples == 60000 and cell[0].dt == pytest.approx(0.05)
    np.testing.assert_allclose(cell.amplitudes, np.arange(-100, 301, 25))
    assert all(-90 < rest_mV(r, 40) < -40 for r in cell)
    counts = spike_counts(cell)
    assert counts[0] == 0 and counts.max() == pytest.approx(18, abs=2)
    abf1 = load_abf(folder / "190619B_0003.abf")  # ABF 1.8
    np.testing.assert_allclose(abf1.amplitudes, np.arange(-120, 421, 60))
    fsi = load_abf(folder / "2019_07_24_0055_fsi.abf", sweeps=[16])
    assert spike_counts(fsi)[0] == pytest.approx(117, abs=3)
    # a sweep read alone keeps its step amplitude (the step is found over the whole protocol)
    assert load_abf(folder / "171116sh_0018.abf", sweeps=[8, 8]).amplitudes.tolist() == [100.0, 100.0]
    assert load_abf(folder / "190619B_0003.abf", sweeps=[8]).amplitudes.tolist() == [360.0]


def test_abf_waveform_protocol_needs_its_command(shared_data):
    folder = shared_data / "ephys-pyabf-samples"
    with pytest.raises(ValueError, match=r"171116sh_0017\.abf', sweep 0.*command="):
        load_abf(folder / "171116sh_0017.abf")
    chirp = np.loadtxt(folder / "sine_sweep_magnitude_20.atf", skiprows=11)[:, 1]
    cell = load_abf(folder / "171116sh_0017.abf", command=chirp)
    assert len(cell) == 3 and cell[0].n_samples == 100000 and np.abs(cell[0].current).max() <= 20.5
    assert spike_counts(cell).sum() == 0  # subthreshold chirp
    with pytest.raises(ValueError, match=r"`command` must be \[T\] or \[3, T\]"):
        load_abf(folder / "171116sh_0017.abf", command=np.zeros((2, 100000)))


def test_pozzorini_frozen_noise(shared_data):
    data = pozzorini_frozen_noise(shared_data)
    assert len(data.train) == 8 and len(data.test) == 1 and data.aec.n_samples == 100000
    rec = data.test[0]
    assert rec.n_samples == 200000 and rec.dt == pytest.approx(0.1) and rec.duration == pytest.approx(20000)
    current = np.asarray(rec.current)
    assert current.mean() == pytest.approx(153, abs=5) and current.std() == pytest.approx(159, abs=5)
    counts = spike_counts(data.train)
    assert counts.min() >= 215 and counts.max() <= 240
    repeats = data.train.stack()
    assert float(jnp.abs(repeats.current - repeats.current[0]).max()) < 2.0  # frozen noise
    assert len(pozzorini_frozen_noise(shared_data, n_test=3).test) == 3


def test_qsnmc2007(shared_data):
    a = qsnmc2007(shared_data, "A")
    assert len(a) == 32 and a[0].n_samples == 34000 and a[0].dt == 1.0
    assert a[0].meta["stimulus"] == "00" and len(a[0].spike_times) == 935
    assert len(a[0].spike_times) / a[0].duration * 1e3 == pytest.approx(27, abs=1.5)  # Hz, as documented
    for rec in a[:8]:
        assert len(rec.with_detected_spikes().spike_times) == pytest.approx(len(rec.spike_times), rel=0.02)
    b = qsnmc2007(shared_data, "B", cell="C010302A1")
    assert len(b) == 23 and {r.dt for r in b.select(protocol="IDRest")} == {0.25}
    assert len(qsnmc2007(shared_data, "B", cell="C140201C")) == 19
    with pytest.raises(ValueError, match="cell= one of"):
        qsnmc2007(shared_data, "B")


def test_paper_hh_steps_in_pA(shared_data):
    cell = paper_hh_steps(shared_data)
    assert len(cell) == 5 and {r.n_samples for r in cell} == {1497} and cell[0].dt == 0.01
    # The CSV holds amperes; the paper's 10, 2, 2, 50, 0.2 nA become pA.
    np.testing.assert_allclose(cell.amplitudes, [10000, 2000, 2000, 50000, 200])
    assert cell[0].meta["current_unit"] == "A"
    assert all(-90 < float(r.voltage[0]) < -40 for r in cell)
    counts = spike_counts(cell)
    assert counts[4] == 0 and counts[3] >= 1 and counts.max() <= 10


# --- round trips -----------------------------------------------------------------------------------------


def test_npz_round_trip_single_and_batch(tmp_path):
    rec = synthetic(file="a.abf", sweep=3, amplitude=100.0).with_spike_times([1.0, 7.5])
    path = rec.save_npz(tmp_path / "rec.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["rec.npz"]  # no temporary left behind
    (back,) = load_npz(path)
    np.testing.assert_allclose(back.voltage, rec.voltage)
    np.testing.assert_allclose(back.current, rec.current)
    assert back.dt == rec.dt and list(back.spike_times) == [1.0, 7.5]
    assert back.meta["sweep"] == 3 and back.meta["file"] == str(path)

    cell = Cell([rec, synthetic(sweep=4).with_spike_times([])], "demo")
    stacked = cell.stack()
    again = load(stacked.save_npz(tmp_path / "cell.npz")).stack()
    np.testing.assert_allclose(again.voltage, stacked.voltage)
    assert [len(s) for s in again.spike_times] == [2, 0] and again.meta["cell"] == "demo"
    assert [m["sweep"] for m in again.meta["sweeps"]] == [3, 4]


def test_a_padded_and_sliced_stack_round_trips_through_npz(tmp_path):
    """Its sweeps come back without the padding (stack(pad=True) masks it again), each with its t_start."""
    cell = Cell([synthetic(300, sweep=0), synthetic(200, sweep=1)], "demo")
    padded = cell.stack(pad=True).slice(2.0, 30.0)
    assert padded.meta["lengths"] == [280, 180]
    assert [m["t_start"] for m in padded.meta["sweeps"]] == pytest.approx([2.0, 2.0])
    back = load(padded.save_npz(tmp_path / "padded.npz"))
    assert [r.n_samples for r in back] == [280, 180]
    assert [r.meta["t_start"] for r in back] == pytest.approx([2.0, 2.0])
    assert back.stack(pad=True).meta["lengths"] == [280, 180]
    np.testing.assert_allclose(back[1].voltage, np.asarray(cell[1].voltage)[20:200])


def test_slicing_keeps_every_spike_in_its_sample():
    """On-grid spike times far from 0 (float32-rounded, as fit.synthetic_sweeps makes them) stay in their
    sample after the shift; before, most landed one sample late."""
    n, dt = 200_000, 0.1
    rec = Recording(dt, np.zeros(n), np.full(n, -70.0), spike_times=np.arange(5, n, 37) * dt)
    train = np.asarray(rec.spike_train())
    for t0, t1 in ((0.5, 200.0), (1.3, 51.3), (15000.0, 20000.0)):
        part = rec.slice(t0, t1)
        i0 = round(t0 / dt)
        np.testing.assert_array_equal(part.spike_train(), train[i0 : i0 + part.n_samples])


def test_csv_round_trip_with_units(tmp_path):
    current = np.zeros((3, 100))
    current[:, 20:80] = [[1e-10], [2e-10], [-5e-11]]  # amperes
    voltage = -0.065 + 0.001 * np.random.default_rng(0).standard_normal((3, 100))  # volts
    header = "," + ",".join(map(str, range(100)))
    for name, table in (("i.csv", current), ("v.csv", voltage)):
        rows = np.column_stack([np.arange(3), table])
        np.savetxt(tmp_path / name, rows, delimiter=",", header=header, comments="")
    cell = load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.05, current_unit="A", voltage_unit="V")
    np.testing.assert_allclose(cell.amplitudes, [100, 200, -50])
    np.testing.assert_allclose(cell.stack().voltage, voltage * 1e3)
    assert [r.meta["sweep"] for r in cell] == [0, 1, 2] and cell[0].duration == pytest.approx(5.0)
    np.savetxt(tmp_path / "plain.csv", current * 1e12, delimiter=",")  # no header, no index column
    plain = load_csv(
        tmp_path / "plain.csv", tmp_path / "plain.csv", 0.05, voltage_unit="mV", index_column=False
    )
    assert len(plain) == 3 and plain[0].n_samples == 100
    for first in (0, 1):  # a header of column numbers (pandas' to_csv(index=False) writes 0, 1, 2, …)
        header = ",".join(map(str, range(first, first + 100)))
        np.savetxt(tmp_path / "labelled.csv", current * 1e12, delimiter=",", header=header, comments="")
        labelled = load_csv(tmp_path / "labelled.csv", tmp_path / "plain.csv", 0.05, index_column=False)
        np.testing.assert_allclose(labelled.amplitudes, [100, 200, -50])


# --- Recording and Cell behaviour ------------------------------------------------------------------------


def test_recording_is_a_pytree_for_jit_and_vmap():
    cell = Cell([synthetic(sweep=k).with_detected_spikes(-63.0) for k in range(3)], "demo")
    batch = cell.stack()
    assert repr(batch) == "Recording(batch=(3,), dt=0.1 ms, T=200, spikes=[4, 4, 4], cell='demo')"
    assert batch.batch_shape == (3,) and batch.dt.shape == (3,)
    mean = jax.jit(jax.vmap(lambda r: jnp.mean(r.voltage) + 0 * r.dt))(batch)
    np.testing.assert_allclose(mean, [float(jnp.mean(r.voltage)) for r in cell], rtol=1e-6)
    assert jax.jit(lambda r: r.current.sum() * r.dt)(cell[0]) == pytest.approx(
        float(cell[0].current.sum()) * 0.1
    )
    train = batch.spike_train()
    assert train.shape == batch.voltage.shape
    assert train.sum(axis=1).tolist() == [len(s) for s in batch.spike_times]
    ragged = Cell([cell[0], cell[1].with_spike_times([2.0])]).stack()
    assert ragged.padded_spike_times.shape == (2, 4) and np.isinf(ragged.padded_spike_times[1, 1:]).all()
    counts = jax.jit(jax.vmap(lambda r: r.spike_train().sum()))(ragged)  # spikes are leaves: they vmap
    assert counts.tolist() == [4, 1]
    assert [len(s) for s in ragged.spike_times] == [4, 1]
    assert [r.meta["sweep"] for r in batch.unstack()] == [0, 1, 2]


def test_detect_spikes_interpolates_and_respects_refractory():
    v = np.full(100, -70.0)
    v[[10, 11, 30, 50]] = [20.0, 10.0, 40.0, 40.0]
    np.testing.assert_allclose(
        detect_spikes(v, dt=0.1), [(9 + 70 / 90) * 0.1, 2.9 + 70 / 110 * 0.1, 4.9 + 70 / 110 * 0.1]
    )
    assert len(detect_spikes(v, dt=0.1, refractory=2.5)) == 2
    assert len(detect_spikes(v, dt=0.1, threshold=30.0)) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"dt": 0.0},
        {"dt": True},
        {"dt": "0.1"},
        {"threshold": np.inf},
        {"threshold": -np.inf},
        {"refractory": np.nan},
        {"refractory": -1.0},
    ],
)
def test_detect_spikes_refuses_a_bad_setting_naming_it(bad):
    [name] = bad
    with pytest.raises(ValueError, match=f"`{name}` must be a finite number"):
        detect_spikes(np.full(10, -70.0), **({"dt": 0.1} | bad))


def test_numpy_and_jax_scalars_are_sampling_intervals():
    v = np.full(100, -70.0)
    v[[10, 30]] = 20.0
    for dt in (np.float32(0.5), np.int64(1), jnp.asarray(0.5)):
        assert len(detect_spikes(v, dt, np.float64(0.0), jnp.asarray(1.0))) == 2
        assert synthetic(n=100).resample(dt).dt == float(dt)
    for bad in (True, "0.5", np.nan, jnp.ones(2)):
        with pytest.raises(ValueError, match="resample needs a positive sampling interval `dt`"):
            synthetic(n=100).resample(bad)


def test_slice_and_resample_keep_spikes_and_meta():
    rec = synthetic(n=1000, dt=0.1, file="x").with_spike_times([10.0, 50.0, 90.0])
    part = rec.slice(40.0, 60.0)
    assert part.n_samples == 200 and list(part.spike_times) == [10.0] and part.meta["t_start"] == 40.0
    np.testing.assert_array_equal(part.voltage, rec.voltage[400:600])
    coarse = rec.resample(0.25)
    assert coarse.n_samples == 400 and list(coarse.spike_times) == [10.0, 50.0, 90.0]
    np.testing.assert_allclose(coarse.voltage[::2], rec.voltage[::5], atol=1e-6)


def test_cell_select_and_stack_lengths():
    cell = Cell([synthetic(n=100 + k, amplitude=50.0 * k, sweep=k) for k in range(4)], "demo")
    assert [r.meta["sweep"] for r in cell.select([50, 150])] == [1, 3]
    assert len(cell.select(low=60)) == 2 and len(cell.where(lambda r: r.n_samples > 101)) == 2
    with pytest.raises(ValueError, match=r"differ in length.*pad=True"):
        cell.stack()
    assert cell.stack(pad=True).current.shape == (4, 103) and cell.stack(truncate=True).n_samples == 100
    assert cell.stack(pad=True).meta["lengths"] == [100, 101, 102, 103]
    with pytest.raises(ValueError, match=r"amplitudes available \(pA\)"):
        cell.select(1000.0)
    with pytest.raises(ValueError, match="no `meta\\['amplitude'\\]`"):
        Cell([synthetic(sweep=9)], "x").select(10.0)


# --- validation errors name the file, the sweep and the argument -----------------------------------------


def test_nan_sample_names_file_sweep_and_count():
    voltage = np.full(50, -65.0)
    voltage[[7, 8, 30]] = np.nan
    with pytest.raises(
        ValueError, match=r"file cell1\.abf, sweep 4.*`voltage` has 3 NaN.*index 7, t = 0\.7 ms"
    ):
        Recording(0.1, np.zeros(50), voltage, meta={"file": "cell1.abf", "sweep": 4})


def test_length_mismatch():
    with pytest.raises(
        ValueError, match=r"sweep 2.*`current` has shape \(50,\) but `voltage` has shape \(49,\)"
    ):
        Recording(0.1, np.zeros(50), np.full(49, -65.0), meta={"sweep": 2})


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), [0.1, 0.1]])
def test_dt_must_be_positive(dt):
    with pytest.raises(ValueError, match=r"file f\.npz.*`dt` must be a positive"):
        Recording(dt, np.zeros(5), np.full(5, -65.0), meta={"file": "f.npz"})


def test_volts_and_amperes_are_caught():
    with pytest.raises(ValueError, match=r"sweep 1.*likely in volts\. Multiply it by 1e3"):
        Recording(0.1, np.zeros(5), np.full(5, -0.065), meta={"sweep": 1})
    with pytest.raises(ValueError, match=r"likely in amperes"):
        Recording(0.1, np.full(5, 1e-10), np.full(5, -65.0))
    with pytest.raises(ValueError, match=r"> 1 V"):
        Recording(0.1, np.zeros(5), np.full(5, -65000.0))
    assert Recording(0.1, np.zeros(5), np.full(5, -0.065), check_units=False).n_samples == 5


def test_spike_times_are_checked():
    with pytest.raises(ValueError, match=r"`spike_times` must lie in \[0, 20\] ms"):
        synthetic(n=200).with_spike_times([5.0, 25.0])
    with pytest.raises(ValueError, match="increasing"):
        synthetic().with_spike_times([5.0, 1.0])
    with pytest.raises(ValueError, match="slice needs 0 <= t0 < t1"):
        synthetic().slice(15.0, 10.0)
    with pytest.raises(ValueError, match="resample needs a positive"):
        synthetic().resample(0.0)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.abf"):
        load(tmp_path / "missing.abf")
    (tmp_path / "trace.xyz").write_text("1,2,3")
    with pytest.raises(ValueError, match=r"trace\.xyz.*extension '\.xyz'.*format="):
        load(tmp_path / "trace.xyz")
    with pytest.raises(ValueError, match="load_csv"):
        load(tmp_path / "trace.csv")
    np.savez(tmp_path / "odd.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match=r"odd\.npz.*keys \['foo'\]"):
        load_npz(tmp_path / "odd.npz")
    np.savetxt(tmp_path / "i.csv", np.zeros((2, 10)), delimiter=",")
    np.savetxt(tmp_path / "v.csv", np.full((3, 10), -65.0), delimiter=",")
    with pytest.raises(ValueError, match=r"i\.csv.*v\.csv.*2 sweeps .* 3 × 10"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.1)
    bad = np.full((2, 10), -65.0)
    bad[1, 4] = np.nan
    np.savetxt(tmp_path / "v.csv", bad, delimiter=",")
    with pytest.raises(ValueError, match=r"v\.csv, sweep 1\): `voltage` has 1 NaN"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.1, index_column=False)
    with pytest.raises(ValueError, match="unknown current unit 'amps!'"):
        load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=0.1, current_unit="amps!")
    readers = {"ibw": lambda p: load_ibw(p, p), "abf": load, "nwb": load, "npz": load}
    kinds = {"ibw": "Igor binary wave", "abf": "ABF", "nwb": "NWB", "npz": "NPZ"}
    for extension, read in readers.items():
        (tmp_path / f"broken.{extension}").write_bytes(b"not a recording")
        with pytest.raises(
            ValueError, match=rf"broken\.{extension}' could not be read as {kinds[extension]}"
        ):
            read(tmp_path / f"broken.{extension}")


# --- properties -----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    dt=st.sampled_from([0.01, 0.025, 0.1, 0.25, 1.0]),
    new_dt=st.floats(0.005, 3.0),
    a=st.floats(0.0, 1.0),
    b=st.floats(0.0, 1.0),
)
def test_resample_and_slice_shapes(n, dt, new_dt, a, b):
    rec = Recording(dt, np.linspace(0, 100, n), np.linspace(-70, -60, n))
    resampled = rec.resample(new_dt)
    assert resampled.n_samples == max(1, round(n * dt / new_dt))
    assert resampled.current.shape == resampled.voltage.shape == (resampled.n_samples,)
    if resampled.n_samples > 1:
        assert abs(resampled.duration - rec.duration) <= new_dt / 2 + 1e-9
    t0, t1 = sorted((a * rec.duration, b * rec.duration))
    if t1 - t0 < dt:
        return
    part = rec.slice(t0, t1)
    start = round(part.meta["t_start"] / dt)
    assert t0 - 1e-9 <= part.meta["t_start"] < t0 + dt
    assert abs(part.n_samples - (t1 - t0) / dt) <= 1 + 1e-9
    np.testing.assert_array_equal(part.voltage, rec.voltage[start : start + part.n_samples])


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 50), min_size=1, max_size=5), pad=st.booleans())
def test_stack_then_unstack_recovers_the_sweeps(lengths, pad):
    cell = Cell([synthetic(n=n, sweep=k).with_spike_times([0.0] * (k % 2)) for k, n in enumerate(lengths)])
    stacked = cell.stack(pad=pad, truncate=not pad)
    width = max(lengths) if pad else min(lengths)
    assert stacked.current.shape == stacked.voltage.shape == (len(lengths), width)
    for original, back in zip(cell, stacked.unstack(), strict=True):
        keep = min(width, original.n_samples)
        np.testing.assert_array_equal(np.asarray(back.voltage)[:keep], np.asarray(original.voltage)[:keep])
        assert back.meta["sweep"] == original.meta["sweep"]
        assert len(back.spike_times) == len(original.spike_times)


@pytest.mark.parametrize("name", ["diffbrain.fit.recording", "diffbrain.fit.loaders"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_one_rule_maps_spike_times_to_samples():
    """Detected (interpolated) times, threshold crossings of the voltage and `spike_train` all put a spike
    at the first sample at or after it, where a fitted model's spike lands."""
    from diffbrain import fit, zoo

    v = np.full(50, -70.0)
    v[[10, 11, 12]] = [-20.0, 20.0, -60.0]  # crosses 0 mV at 1.05 ms: sample 11
    v[[30, 31, 32]] = [-40.0, 40.0, -60.0]  # 3.05 ms: sample 31
    v[[45, 46]] = [-1.0, 99.0]  # 4.501 ms: sample 46
    rec = Recording(0.1, np.full(50, 100.0), v)
    detected = rec.with_detected_spikes()
    grids = [np.flatnonzero(np.asarray(fit.prepare(zoo.LIF(), r)[1].spikes[:, 0])) for r in (rec, detected)]
    assert grids[0].tolist() == grids[1].tolist() == [11, 31, 46]
    assert np.flatnonzero(np.asarray(detected.spike_train())).tolist() == [11, 31, 46]
    # times on the grid stay at their sample, also when stored in float32 (no x64) far into a sweep
    k = np.arange(3, 200_000, 9_973)
    with jax.enable_x64(False):
        on_grid = Recording(0.1, np.zeros(200_000), np.full(200_000, -65.0), spike_times=k * 0.1)
    assert on_grid.padded_spike_times.dtype == np.float32
    assert np.flatnonzero(np.asarray(on_grid.spike_train())).tolist() == k.tolist()
    target = fit.prepare(zoo.LIF(), on_grid)[1]
    assert np.flatnonzero(np.asarray(target.spikes[:, 0])).tolist() == k.tolist()


def test_a_simulated_sweeps_spikes_land_where_the_model_puts_them():
    from diffbrain import fit, zoo

    model = zoo.LIF(V_th=-55.0)
    (sweep,) = fit.synthetic_sweeps(model, np.full((1, 400), 400.0), dt=0.1)
    shifted = sweep.with_spike_times(sweep.spike_times - 0.05)  # mid-step crossings
    model_spikes = np.asarray(fit.prepare(model, sweep)[1].spikes[:, 0])
    assert model_spikes.sum() >= 3
    np.testing.assert_array_equal(np.asarray(fit.prepare(model, shifted)[1].spikes[:, 0]), model_spikes)


def test_slice_shifts_spikes_by_the_first_kept_sample():
    rec = Recording(0.1, np.zeros(100), np.full(100, -65.0), spike_times=[5.0])
    piece = rec.slice(1.05, 8.0)  # first kept sample: 11 at 1.1 ms
    assert piece.meta["t_start"] == pytest.approx(1.1)
    np.testing.assert_allclose(piece.spike_times, [5.0 - 1.1], rtol=1e-6)


def test_unreadable_or_empty_csv_names_the_file(tmp_path):
    (tmp_path / "binary.csv").write_bytes(b"\x00\xc9\xff\xfe" * 10)
    (tmp_path / "header.csv").write_text(",0,1,2\n")
    (tmp_path / "v.csv").write_text("0,1,2,3\n")
    with pytest.raises(ValueError, match=r"binary.csv' is not a text table of numbers"):
        load_csv(tmp_path / "binary.csv", tmp_path / "v.csv", dt=0.1)
    with pytest.raises(ValueError, match=r"header.csv' holds no rows of samples"):
        load_csv(tmp_path / "header.csv", tmp_path / "v.csv", dt=0.1)


def test_select_by_protocol_needs_amplitudes_only_of_that_protocol():
    steps = [synthetic(sweep=k, protocol="IDrest", amplitude=100.0 * k) for k in range(3)]
    cell = Cell([*steps, synthetic(sweep=9, protocol="noise")], "demo")
    assert [r.meta["sweep"] for r in cell.select(protocol="IDrest", low=100)] == [1, 2]
    with pytest.raises(ValueError, match=r"sweeps \[9\] have no `meta\['amplitude'\]`"):
        cell.select(low=100)


def test_a_recording_made_without_unit_checks_loads_back(tmp_path):
    """``check_units=False`` (here a 2 MHz sampling) is the maker's choice: its NPZ loads as it was saved."""
    rec = Recording(0.0005, np.full(100, 100.0), np.full(100, -65.0), check_units=False)
    (back,) = load_npz(rec.save_npz(tmp_path / "fast.npz"))
    assert back.dt == 0.0005
    np.testing.assert_array_equal(back.voltage, rec.voltage)


def test_microseconds_with_the_micro_sign_or_the_greek_mu():
    from diffbrain.fit.loaders import _to_unit

    assert _to_unit("time", "\u00b5s", "here") == _to_unit("time", "\u03bcs", "here") == 1e-3


def test_nwb_without_a_table_loads_sweeps_in_recording_order(tmp_path):
    """Twelve sweeps named sweep_1 … sweep_12 without an intracellular-recordings table come back in
    recording order (starting time), not in the text order of their names (sweep_1, sweep_10, …, sweep_2);
    without starting times or sweep numbers, the numbers in their names order them."""
    from datetime import UTC, datetime

    pynwb = pytest.importorskip("pynwb")
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    def write(path, timed):
        nwb = pynwb.NWBFile("test", "id", datetime(2020, 1, 1, tzinfo=UTC))
        electrode = nwb.create_icephys_electrode(name="e", description="", device=nwb.create_device("amp"))
        for k in range(1, 13):
            common = dict(rate=1e4, electrode=electrode, gain=1.0, starting_time=float(k) if timed else 0.0)
            number = {"sweep_number": np.uint32(k)} if timed else {}
            nwb.add_acquisition(
                CurrentClampSeries(name=f"sweep_{k}", data=np.full(100, -0.07), **number, **common)
            )
            nwb.add_stimulus(
                CurrentClampStimulusSeries(name=f"stim_{k}", data=np.full(100, k * 1e-11), **number, **common)
            )
        with pynwb.NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
        return path

    for timed in (True, False):
        cell = load_nwb(write(tmp_path / f"order_{timed}.nwb", timed))
        assert [r.meta["sweep"] for r in cell] == [f"sweep_{k}" for k in range(1, 13)]
        np.testing.assert_allclose(cell.amplitudes, np.arange(10.0, 121.0, 10.0))


def test_prepare_detects_spikes_as_detect_spikes_does():
    """Without given spike times, the fit's spike target holds the spikes `detect_spikes` finds (1 ms
    refractory), not every upward crossing: ringing 0.3 ms after a spike is no second spike (on
    171116sh_0019.abf sweeps 16–18 the upward crossings were [45, 377, 225] and `detect_spikes` counts
    [26, 93, 59], still mostly plateau noise of depolarisation block: 2 per sweep reach +20 mV, a
    limitation its docstring states)."""
    from diffbrain import fit, zoo

    v = np.full(100, -70.0)
    v[[10, 11, 12, 13, 14, 15]] = [-20.0, 20.0, -5.0, 10.0, -60.0, -70.0]  # a spike that rings at 1.3 ms
    v[[40, 41]] = [-10.0, 30.0]  # a second spike, 3 ms later
    rec = Recording(0.1, np.full(100, 100.0), v)
    target = fit.prepare(zoo.LIF(), rec)[1]
    assert np.flatnonzero(np.asarray(target.spikes[:, 0])).tolist() == [11, 41]
    detected = fit.prepare(zoo.LIF(), rec.with_detected_spikes())[1]
    np.testing.assert_array_equal(np.asarray(target.spikes), np.asarray(detected.spikes))


def test_spike_train_and_prepare_count_the_same_spikes():
    """A spike time in the sweep's last interval ((T − 1)·dt, T·dt], which a Recording accepts, lies past
    the last sample: `spike_train` and `prepare` (what the fit's losses see) both leave it out (spike_train
    counted it at the last sample, prepare dropped it); two spikes in one sample count 2 in both."""
    from diffbrain import fit, zoo

    rec = Recording(0.1, np.full(10, 100.0), np.full(10, -70.0), spike_times=[0.32, 0.35, 0.95])
    train = np.asarray(rec.spike_train())
    target = np.asarray(fit.prepare(zoo.LIF(), rec)[1].spikes[:, 0])
    np.testing.assert_array_equal(train, target)
    assert train.tolist() == [0, 0, 0, 0, 2, 0, 0, 0, 0, 0]


def test_stack_refuses_sweeps_of_which_only_some_have_spike_times():
    """One sweep with spike times supplied with the data and one without: the stack named the sweep
    without them, where it used to drop every sweep's spike times silently (the fit's spike target of
    the stack then held 0 spikes, that of the Cell 2)."""
    v = np.full(100, -70.0)
    given = Recording(0.1, np.full(100, 50.0), v, spike_times=[2.0, 5.0], meta={"sweep": "a"})
    bare = Recording(0.1, np.full(100, 60.0), v, meta={"sweep": "b"})
    with pytest.raises(ValueError, match=r"sweeps \['b'\] have no spike times but the others have"):
        Cell([given, bare]).stack()
    assert Cell([given, bare.with_detected_spikes()]).stack().spike_times[0].tolist() == [2.0, 5.0]
    assert Cell([given.with_spike_times(None), bare]).stack().spike_times is None


def test_npz_time_columns_keep_the_sampling_interval(tmp_path):
    """A [T, 3] (time s, current pA, voltage mV) table at 30 kHz loads with dt = 1/30 ms to float64
    precision (rounded to 5 significant digits it was 0.033333: 0.3 ms short after 30 s, 9 samples);
    a float32 column of 0.05 ms steps (0.049999997 from its ends) still reads 0.05."""
    n = 900_000
    t = np.arange(n) / 30_000.0
    path = tmp_path / "cols.npz"
    np.savez(path, cellA_noise_1=np.stack([t, np.full(n, 100.0), np.full(n, -65.0)], 1))
    recording = load_npz(path)[0]
    assert recording.dt == pytest.approx(1 / 30, rel=1e-12)
    assert recording.duration == pytest.approx(30_000.0, rel=1e-12)
    t32 = (np.arange(1520) * 5e-5).astype(np.float32)
    np.savez(
        path, cellA_step_2=np.stack([t32, np.zeros(1520, np.float32), np.full(1520, -65.0, np.float32)], 1)
    )
    assert load_npz(path)[0].dt == 0.05


def test_nwb_sweeps_load_in_starting_time_order_whatever_their_names(tmp_path):
    """Without a table or sweep numbers, sweeps load by starting time, not by name: sweep_1 … sweep_3
    recorded last to first come back sweep_3, sweep_2, sweep_1."""
    from datetime import UTC, datetime

    pynwb = pytest.importorskip("pynwb")
    from pynwb.icephys import CurrentClampSeries, CurrentClampStimulusSeries

    nwb = pynwb.NWBFile("test", "id", datetime(2020, 1, 1, tzinfo=UTC))
    electrode = nwb.create_icephys_electrode(name="e", description="", device=nwb.create_device("amp"))
    for k in range(1, 4):
        common = dict(rate=1e4, electrode=electrode, gain=1.0, starting_time=float(4 - k))
        nwb.add_acquisition(CurrentClampSeries(name=f"sweep_{k}", data=np.full(100, -0.07), **common))
        nwb.add_stimulus(CurrentClampStimulusSeries(name=f"stim_{k}", data=np.full(100, k * 1e-11), **common))
    with pynwb.NWBHDF5IO(str(tmp_path / "reversed.nwb"), "w") as io:
        io.write(nwb)
    cell = load_nwb(tmp_path / "reversed.nwb")
    assert [r.meta["sweep"] for r in cell] == ["sweep_3", "sweep_2", "sweep_1"]
    np.testing.assert_allclose(cell.amplitudes, [30.0, 20.0, 10.0])
