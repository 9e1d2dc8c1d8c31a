"""`load_csv`: index columns are checked, and sweeps of unequal length (padded rows) load as they were."""

import numpy as np
import pytest

from diffbrain.fit.loaders import load_csv

CURRENT = np.array([[-20.5, -20.5, 100.0, 100.0, -20.5], [-20.5, -20.5, 200.0, 200.0, -20.5]])  # pA
VOLTAGE = np.array([[-70.3, -70.1, -60.0, -55.0, -68.0], [-70.2, -70.0, -50.0, -45.0, -66.0]])  # mV


def write(path, rows, index=None, header=None):
    """One row per sweep, as text; ``None`` samples are written as empty fields (pandas' NaN)."""
    lines = [] if header is None else [header]
    for k, row in enumerate(rows):
        fields = ["" if x is None else repr(float(x)) for x in row]
        lines.append(",".join(([str(index[k])] if index is not None else []) + fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_table_without_index_column_is_refused(tmp_path):
    """The first samples (−20.5 pA, −70.3 mV) are no sweep indices: index_column=True (the default) must
    not take them as such and drop them."""
    i, v = write(tmp_path / "i.csv", CURRENT), write(tmp_path / "v.csv", VOLTAGE)
    with pytest.raises(ValueError, match=r"i\.csv'.*\[-20\.5, -20\.5\], not distinct.*index_column=False"):
        load_csv(i, v, dt=0.1)
    cell = load_csv(i, v, dt=0.1, index_column=False)
    assert [r.n_samples for r in cell] == [5, 5]
    np.testing.assert_allclose(np.asarray(cell[0].voltage), VOLTAGE[0], rtol=1e-6)


def test_the_index_columns_must_agree(tmp_path):
    i = write(tmp_path / "i.csv", CURRENT, index=[0, 1])
    v = write(tmp_path / "v.csv", VOLTAGE, index=[1, 0])
    with pytest.raises(ValueError, match=r"current table's \[0, 1\] differ from the voltage table's \[1, 0"):
        load_csv(i, v, dt=0.1)
    v = write(tmp_path / "v.csv", VOLTAGE, index=[0, 1])
    assert [r.meta["sweep"] for r in load_csv(i, v, dt=0.1)] == [0, 1]


@pytest.mark.parametrize("pad", [None, float("nan")], ids=["empty", "nan"])
def test_unequal_sweeps_padded_with_empty_or_nan_fields(tmp_path, pad):
    """pandas writes sweeps of 15 and 11 samples as rows of 15 with trailing empty (or ``nan``) fields:
    each sweep comes back with its own samples, as a Cell of unequal lengths."""
    current = [np.r_[np.zeros(5), np.full(10, 100.0)], np.r_[np.zeros(5), np.full(6, 200.0)]]
    voltage = [np.linspace(-70, -50, 15), np.linspace(-70, -40, 11)]
    padded = lambda rows: [list(r) + [pad] * (15 - r.size) for r in rows]
    header = "," + ",".join(map(str, range(15)))
    i = write(tmp_path / "i.csv", padded(current), index=[0, 1], header=header)
    v = write(tmp_path / "v.csv", padded(voltage), index=[0, 1], header=header)
    cell = load_csv(i, v, dt=0.1)
    assert [r.n_samples for r in cell] == [15, 11]
    np.testing.assert_allclose(cell.amplitudes, [100.0, 200.0])
    for recording, expected in zip(cell, voltage, strict=True):
        np.testing.assert_allclose(np.asarray(recording.voltage), expected, rtol=1e-6)


def test_unequal_rows_name_the_sweep_and_the_right_file(tmp_path):
    i = write(tmp_path / "i.csv", [[0.0] * 5, [0.0, 1.0, 2.0, None, None]], index=[0, 1])
    v = write(tmp_path / "v.csv", [[-70.0] * 5, [-70.0] * 5], index=[0, 1])
    with pytest.raises(ValueError, match=r"sweep 1 has 3 current samples but 5 voltage samples"):
        load_csv(i, v, dt=0.1)
    i = write(tmp_path / "i.csv", [[0.0] * 5, [0.0, None, 2.0, 3.0, 4.0]], index=[0, 1])
    with pytest.raises(ValueError, match=r"CSV file '[^']*i\.csv', sweep 1: `current` has 1 empty or NaN"):
        load_csv(i, v, dt=0.1)


def test_amplitude_is_the_step_level_not_a_prepulse(tmp_path):
    """Sweeps with a −100 pA prepulse they all share, then a 0…60 pA step: ``meta["amplitude"]`` is the
    step level, as `load_abf` reads it from the protocol, not the largest-magnitude sample (the prepulse,
    which made every sweep below 100 pA look like −100 pA and `select(amplitude=30)` match nothing)."""
    steps = [0.0, 30.0, 60.0, 120.0]
    current = [
        np.r_[np.zeros(10), np.full(10, -100.0), np.zeros(10), np.full(40, a), np.zeros(10)] for a in steps
    ]
    voltage = [np.full(80, -70.0)] * len(steps)
    i, v = (
        write(tmp_path / "i.csv", current, index=range(4)),
        write(tmp_path / "v.csv", voltage, index=range(4)),
    )
    cell = load_csv(i, v, dt=0.1)
    np.testing.assert_allclose(cell.amplitudes, steps)
    assert len(cell.select(amplitude=30.0)) == 1
    # one sweep alone: its longest stretch away from the holding current (its first sample)
    i, v = (
        write(tmp_path / "i1.csv", current[1:2], index=[0]),
        write(tmp_path / "v1.csv", voltage[:1], index=[0]),
    )
    assert load_csv(i, v, dt=0.1)[0].meta["amplitude"] == 30.0


def test_csv_and_abf_amplitudes_agree(shared_data, tmp_path):
    """18711001.abf (a −100 pA prepulse, then a 0…290 pA step) written as CSV tables: both loaders give
    each sweep the same amplitude."""
    from diffbrain.fit.loaders import load_abf

    abf = load_abf(shared_data / "ephys-pyabf-samples" / "18711001.abf", sweeps=list(range(0, 30, 3)))
    rows = range(len(abf))
    i = write(tmp_path / "i.csv", [np.asarray(r.current)[::20] for r in abf], index=rows)
    v = write(tmp_path / "v.csv", [np.asarray(r.voltage)[::20] for r in abf], index=rows)
    csv = load_csv(i, v, dt=1.0)
    np.testing.assert_allclose(csv.amplitudes, abf.amplitudes)
    np.testing.assert_allclose(csv.amplitudes, np.arange(0.0, 300.0, 30.0))
