"""The sampling interval of an NPZ table's time column (QSNMC challenge B layout) when the column carries
float32 rounding inside a float64 table."""

import numpy as np
import pytest

from diffbrain.fit.loaders import load_npz


@pytest.mark.parametrize("n, step_s", [(12_000, 2.5e-4), (6_000, 1e-5), (4_480, 2.5e-4), (50_000, 1e-4)])
def test_a_float32_time_column_stacked_into_a_float64_table_keeps_its_exact_dt(tmp_path, n, step_s):
    """np.stack of a float32 time column with float64 current and voltage makes a float64 table of float32
    times: dt is the step as a float32 table gives it (0.25 ms had read 0.24999999157517483 ms)."""
    times = (np.arange(n) * step_s).astype(np.float32)
    table = np.stack([times, np.full(n, 50.0), np.full(n, -65.0)], axis=1)
    assert table.dtype == np.float64
    np.savez(tmp_path / "upcast.npz", cellA_step_1=table)
    rec = load_npz(tmp_path / "upcast.npz")[0]
    assert rec.dt == step_s * 1e3
    assert rec.slice(0.0, 1000 * step_s * 1e3).n_samples == 1000


def test_a_float64_time_column_of_non_decimal_steps_keeps_all_its_digits(tmp_path):
    """1/30 ms steps in float64 (not float32 values) are not rounded to a shorter decimal."""
    times = np.arange(3000) / 30e3
    np.savez(
        tmp_path / "thirds.npz", cellA_step_1=np.stack([times, np.full(3000, 50.0), np.full(3000, -65.0)], 1)
    )
    assert load_npz(tmp_path / "thirds.npz")[0].dt == pytest.approx(1 / 30, rel=1e-12)
