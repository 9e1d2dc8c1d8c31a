"""Fixtures shared by the fit tests."""

import numpy as np
import pytest

from diffbrain import fit, zoo


@pytest.fixture(scope="module")
def silent_lif_sweeps():
    """One 12 ms sweep of a LIF (g_L 20 nS) at 200 pA, sampled every 0.2 ms, its threshold out of reach."""
    return fit.synthetic_sweeps(zoo.LIF(V_th=100.0, g_L=20.0), np.full((1, 60), 200.0), dt=0.2)
