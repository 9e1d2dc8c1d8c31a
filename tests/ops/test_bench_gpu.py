"""The GPU run's pieces on CPU: the device-built network and the Pallas check (interpreted here)."""

import jax
import numpy as np
import pytest

from diffbrain.bench import gpu


def test_device_csr_rows_are_distinct_sorted_and_in_range():
    n, per_row = 500, 40
    W = gpu.device_csr(jax.random.key(3), n, per_row, True)
    columns = np.asarray(W.indices).reshape(n, per_row)
    assert W.shape == (n, n) and W.nnz == n * per_row and W.data.shape == (n * per_row,)
    assert (np.diff(columns, axis=1) > 0).all() and columns.min() >= 0 and columns.max() < n
    # spread over the whole range, not bunched at the start
    assert columns[:, -1].mean() > 0.8 * n and columns[:, 0].mean() < 0.2 * n
    assert gpu.device_csr(jax.random.key(3), n, per_row, False).homogeneous


def test_check_compares_pallas_with_the_reference():
    table = gpu.check(shapes=((40, 300), (1, 5)))
    assert set(table.operation) >= {"event_matvec bool", "weight grad", "spike grad", "event_matmat"}
    assert set(table.operation) >= {"arrival_scatter pop", "arrival weight grad", "arrival spike grad"}
    assert (table.relative_error < 1e-5).all()


def test_check_fails_on_a_wrong_kernel(monkeypatch):
    from diffbrain.ops.kernels import pallas

    right = pallas._row_dot_batch  # behind row_dot and row_dot_batch: the spike gradient
    monkeypatch.setattr(pallas, "_row_dot_batch", lambda *args, **kw: 2 * right(*args, **kw))
    with pytest.raises(AssertionError, match="spike grad"):
        gpu.check(shapes=((30, 40),))
