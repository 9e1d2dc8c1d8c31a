"""Shared helpers of the zoo tests."""

import numpy as np


def assert_same_projection(ours, theirs) -> None:
    """Two `DelayedCSR` projections hold the same arrays: the CSR's structure and weights, and the rows'
    sources, lags and row pointers, dtype by dtype."""
    pairs = [
        (ours.W, theirs.W, ("indptr", "indices", "data")),
        (ours, theirs, ("source", "lag", "row_ptr")),
    ]
    for a, b, fields in pairs:
        for field in fields:
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype and x.shape == y.shape, field
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=field)
