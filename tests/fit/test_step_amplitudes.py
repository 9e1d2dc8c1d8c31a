"""`step_amplitudes` (``meta["amplitude"]`` of load_csv and load_nwb): the step of each protocol in a file,
and of a measured current, whose noise and spike artefacts must not make the step."""

import itertools
import time
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
    assert step_amplitudes(currents, dt=0.1, protocols=protocols) == [100.0, 200.0, 300.0, 800.0, 1000.0]


def test_a_short_pulse_of_a_command_is_found():
    """1 ms pulses at dt 0.1 ms: a noise-free command is read as it is, not through medians of 1 ms."""
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
        _write_table([getattr(r, trace) for r in cell], tmp_path / f"{name}.csv")
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
            _write_table([getattr(r, trace) for r in abf], tmp_path / f"{name}.csv")
        read = load_csv(tmp_path / "i.csv", tmp_path / "v.csv", dt=float(abf[0].dt))
        np.testing.assert_allclose(read.amplitudes, abf.amplitudes, atol=0.5, err_msg=str(path))
        compared += 1
    assert compared >= 7


def _write_table(sweeps, path):
    """Equally long sweeps as pandas' ``pd.DataFrame(sweeps).to_csv(path)`` writes them (a header of column
    numbers, an index column, full-precision floats), through NumPy: pandas took ~5 s for 20 sweeps of
    60,000 samples, most of this file's time."""
    rows = np.stack([np.asarray(sweep, float) for sweep in sweeps])
    table = np.column_stack([np.arange(len(rows)), rows])
    header = "," + ",".join(map(str, range(rows.shape[1])))
    np.savetxt(path, table, fmt=["%d"] + ["%.17g"] * rows.shape[1], delimiter=",", header=header, comments="")


def test_the_table_writer_writes_what_pandas_writes(tmp_path):
    sweeps = [np.array([0.1, -2.5, 3e-7]), np.array([1.0, 2.0, np.pi])]
    _write_table(sweeps, tmp_path / "ours.csv")
    pd.DataFrame(sweeps).to_csv(tmp_path / "pandas.csv")
    ours, theirs = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("ours", "pandas"))
    pd.testing.assert_frame_equal(ours, theirs)


def _as_csv(recordings, folder):
    """The sweeps written as two CSV tables (pandas' layout) and read back by load_csv."""
    for name, trace in (("i", "current"), ("v", "voltage")):
        _write_table([getattr(r, trace) for r in recordings], folder / f"{name}.csv")
    return load_csv(folder / "i.csv", folder / "v.csv", dt=float(recordings[0].dt))


@pytest.mark.parametrize("cell_id", ["C060109A1-SR-C1", "C080501B2-SR-C1"])
@pytest.mark.parametrize("protocol", ["IDrest", "IDthresh"])
def test_each_measured_sweep_alone_in_a_pair_or_a_few_gives_the_configured_step(
    shared_data, tmp_path, cell_id, protocol
):
    """Every single BBP sweep and every pair, as load_csv reads them (step_amplitudes at the file's dt),
    and a few random subsets written as CSV: the config's step within 2 pA. The sweeps' spread had been
    read as the step, noise where they share a level (C060109A1 IDrest: repeats at 378.8 pA gave -25.9 and
    78.1, 273 of 480 pairs > 5 pA off, worst by 764 pA; one sweep alone -15.9)."""
    cell = bbp_l5pc_cell(shared_data, cell_id, protocol)
    currents = [np.asarray(r.current, float) for r in cell]
    configured = np.array([r.meta["amplitude"] for r in cell])
    dt = float(cell[0].dt)
    for size in (1, 2):
        for subset in itertools.combinations(range(len(cell)), size):
            read = step_amplitudes([currents[k] for k in subset], dt=dt)
            np.testing.assert_allclose(read, configured[list(subset)], atol=2.0, err_msg=str(subset))
    rng = np.random.default_rng(0)
    for size in (3, 5, 8):
        subset = sorted(rng.choice(len(cell), size, replace=False).tolist())
        read = _as_csv([cell[k] for k in subset], tmp_path).amplitudes
        np.testing.assert_allclose(read, configured[subset], atol=2.0, err_msg=str(subset))


def test_repeats_of_one_noisy_step_give_its_level():
    """Three repeats (and one sweep alone) of a 500 ms, 200 pA step with 5 pA white noise at dt 0.1 ms,
    20 seeds: 200 pA within 1 pA (the sweeps' spread, noise, had put it ~200 pA off in 19 of 20 seeds)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        currents = [_square(200.0, 1000, 6000) + 5 * rng.standard_normal(10_000) for _ in range(3)]
        np.testing.assert_allclose(step_amplitudes(currents, dt=0.1), 200.0, atol=1.0, err_msg=str(seed))
        np.testing.assert_allclose(step_amplitudes(currents[:1], dt=0.1), 200.0, atol=1.0)


def test_a_noisy_flat_sweep_gives_its_median():
    """No step, only noise: no stretch stands out, the level is the sweep's median (holding)."""
    rng = np.random.default_rng(0)
    flat = -30.0 + 5 * rng.standard_normal(10_000)
    np.testing.assert_allclose(step_amplitudes([flat], dt=0.1), np.median(flat))


def test_a_prepulse_longer_than_the_step_written_as_csv_gives_load_abfs_levels(shared_data, tmp_path):
    """18711001.abf: a 300 ms prepulse of -100 pA in every sweep, then a 500 ms step from 0 pA (sweep 0
    holds at 0 pA): as CSV, all sweeps and every pair give load_abf's levels within 0.5 pA."""
    abf = load_abf(shared_data / "ephys-pyabf-samples" / "18711001.abf")
    np.testing.assert_allclose(_as_csv(list(abf), tmp_path).amplitudes, abf.amplitudes, atol=0.5)
    currents = [np.asarray(r.current, float) for r in abf]
    for i, j in itertools.combinations(range(len(abf)), 2):
        read = step_amplitudes([currents[i], currents[j]], dt=float(abf[0].dt))
        np.testing.assert_allclose(read, [abf.amplitudes[i], abf.amplitudes[j]], atol=0.5)


def test_a_prepulse_protocol_of_commands_named_by_one_str():
    """A 100 ms prepulse shared by all sweeps, then 50 ms steps: protocols='IV' names one protocol for all
    (a str had been split into one character per sweep: [-100, -100, -100], or IndexError)."""
    prepulse = np.r_[np.zeros(100), np.full(1000, -100.0), np.zeros(100)]
    currents = [np.r_[prepulse, np.full(500, a), np.zeros(300)] for a in (50.0, 100.0, 150.0)]
    for protocols in (None, ["IV"] * 3, "IV", "IVs"):
        assert step_amplitudes(currents, dt=0.1, protocols=protocols) == [50.0, 100.0, 150.0]


@pytest.mark.parametrize("dt", [0.0, -0.1, "0.1", float("nan"), True, [0.1, 0.0]])
def test_step_amplitudes_refuses_a_dt_that_is_no_positive_number(dt):
    """dt 0 had raised ZeroDivisionError, -0.1 and '0.1' had been taken."""
    with pytest.raises(ValueError, match="`dt` must be the sampling interval in ms, a positive number"):
        step_amplitudes([np.zeros(5), np.ones(5)], dt=dt)


def test_a_measured_current_without_dt_is_refused():
    noisy = np.random.default_rng(0).standard_normal(1000)
    with pytest.raises(
        ValueError, match=r"current 0 is not piecewise constant \(a ramp, sine or noisy current.* needs `dt`"
    ):
        step_amplitudes([noisy])


def test_long_sweeps_at_a_high_rate_are_read_quickly():
    """14 noise-free 3 s commands at dt 0.005 ms (Allen-like NWB) and 10 noisy 20 s sweeps at 0.02 ms: each
    set in well under 5 s (the 3 ms running median had taken 13.8 s and 36 s)."""
    commands = [_square(a, 100_000, 300_000, n=600_000) for a in np.arange(-110, 160, 20.0)]
    start = time.perf_counter()
    assert step_amplitudes(commands, dt=0.005) == list(np.arange(-110, 160, 20.0))
    assert time.perf_counter() - start < 5.0
    rng = np.random.default_rng(0)
    levels = np.linspace(-100, 300, 10)
    noisy = [_square(a, 100_000, 600_000, n=1_000_000) + 5 * rng.standard_normal(1_000_000) for a in levels]
    start = time.perf_counter()
    np.testing.assert_allclose(step_amplitudes(noisy, dt=0.02), levels, atol=0.5)
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("seed", range(10))
def test_a_measured_step_running_to_the_sweeps_end_gives_its_level(seed):
    """A 200 pA step over the last 60 % or 40 % of a sweep (5 pA noise, dt 0.1 ms): 200 pA within 1 pA;
    the first block is holding, so a step from the start reads the level after it, 0 pA, as a command
    does (the pulse and its complement had tied: 4 of 10 seeds read 0 pA for the step at the end)."""
    noise = 5 * np.random.default_rng(seed).standard_normal(10_000)
    for holding in (4000, 6000):
        level = step_amplitudes([np.r_[np.zeros(holding), np.full(10_000 - holding, 200.0)] + noise], dt=0.1)
        np.testing.assert_allclose(level, [200.0], atol=1.0)
    level = step_amplitudes([np.r_[np.full(6000, 200.0), np.zeros(4000)] + noise], dt=0.1)
    np.testing.assert_allclose(level, [0.0], atol=1.0)


@pytest.mark.parametrize("dt", [None, 0.1])
def test_a_non_finite_sample_is_refused_naming_its_sweep_and_sample(dt):
    """A NaN sample (a missing CSV cell) is refused, naming the sweep and the sample (it had given levels
    silently, a command's and a measured current's alike)."""
    current = np.r_[np.zeros(1000), np.full(5000, 200.0), np.zeros(4000)]
    if dt is not None:
        current = current + 5 * np.random.default_rng(0).standard_normal(current.size)
    current[7000] = np.nan
    with pytest.raises(ValueError, match=r"current 1 has a non-finite sample \(nan\) at sample 7000"):
        step_amplitudes([np.zeros(10_000), current], dt=dt)


def test_small_measured_steps_after_a_larger_prepulse_give_their_level():
    """Measured steps of -50 to 150 pA (500 ms) after a -100 pA prepulse of 300 ms, 5 pA noise: read
    together, each within 1 pA (each read alone had given the prepulse, -100 pA, for -50, 0, 20 and 50);
    the small steps alone as a group too."""
    rng = np.random.default_rng(0)
    amplitudes = np.array([-50.0, 0.0, 20.0, 50.0, 100.0, 150.0])
    currents = [
        np.r_[np.zeros(1000), np.full(3000, -100.0), np.zeros(1000), np.full(5000, a), np.zeros(2000)]
        + 5 * rng.standard_normal(12_000)
        for a in amplitudes
    ]
    np.testing.assert_allclose(step_amplitudes(currents, dt=0.1), amplitudes, atol=1.0)
    np.testing.assert_allclose(step_amplitudes(currents[:4], dt=0.1), amplitudes[:4], atol=1.0)
    np.testing.assert_allclose(step_amplitudes(currents[:2], dt=0.1), amplitudes[:2], atol=1.0)


def test_a_short_pulse_in_a_long_measured_sweep_warns():
    """A 3 ms, 1000 pA pulse in a 3 s sweep at dt 0.005 ms spans one 6 ms block (blocks are sweep/500):
    its reading mixes with holding (about 3 pA), and step_amplitudes warns, naming step_levels."""
    current = np.zeros(600_000)
    current[200_000:200_600] = 1000.0
    current += 5 * np.random.default_rng(0).standard_normal(current.size)
    with pytest.warns(UserWarning, match=r"spans 1 block\(s\) of 6 ms.*step_levels"):
        step_amplitudes([current], dt=0.005)
