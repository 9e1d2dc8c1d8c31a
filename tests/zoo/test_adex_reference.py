"""AdEx against an independent NumPy exponential-Euler integration of Brette & Gerstner's (2005) equations.

The scheme is Brian2's ``exponential_euler`` (what `test_brian2_parity` checks against Brian2 itself, where it
is installed): each variable ``x`` with ``dx/dt = A·x + B`` steps as ``x ← (x + B/A)·e^{A·dt} − B/A``, A and B
evaluated at the step's start; then, when ``V > V_peak``, ``V ← V_reset`` and ``w ← w + b``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain import zoo

jax.config.update("jax_enable_x64", True)

NAMES = ("C", "g_L", "E_L", "V_T", "delta_T", "a", "b", "tau_w", "V_reset", "V_peak")


def _reference(p, current, dt, n_steps):
    """V (mV) and w (pA) after each step, and the steps that spiked."""
    V, w = p["E_L"], 0.0
    Vs, ws, spikes = [], [], []
    for k in range(n_steps):
        A = -p["g_L"] / p["C"]
        exponential = p["g_L"] * p["delta_T"] * math.exp((V - p["V_T"]) / p["delta_T"])
        B = (p["g_L"] * p["E_L"] + exponential - w + current) / p["C"]
        A_w, B_w = -1 / p["tau_w"], p["a"] * (V - p["E_L"]) / p["tau_w"]
        V, w = (V + B / A) * math.exp(A * dt) - B / A, (w + B_w / A_w) * math.exp(A_w * dt) - B_w / A_w
        if V > p["V_peak"]:
            V, w = p["V_reset"], w + p["b"]
            spikes.append(k)
        Vs.append(V)
        ws.append(w)
    return np.array(Vs), np.array(ws), spikes


@pytest.mark.parametrize(
    ("model", "current"),
    [
        (zoo.AdEx(), 1000.0),  # Brette & Gerstner (2005): tonic firing with adaptation
        # Naud et al. (2008), Table 1, "adaptation": V_reset above E_L, slow w
        (zoo.AdEx(C=200.0, g_L=12.0, E_L=-70.0, V_T=-50.0, a=2.0, b=60.0, tau_w=300.0, V_reset=-58.0), 500.0),
    ],
    ids=["brette-gerstner", "naud-adapting"],
)
def test_adex_matches_a_numpy_exponential_euler(model, current):
    model = zoo.astype(model, jnp.float64)
    dt, n_steps = 0.1, 5000
    V, w, spikes = _reference({name: float(getattr(model, name)) for name in NAMES}, current, dt, n_steps)
    trace = zoo.simulate(model, jnp.full(n_steps, current), dt, record=("V", "w"))
    assert len(spikes) >= 10  # adapting: the intervals grow
    assert spikes[-1] - spikes[-2] > spikes[1] - spikes[0]
    assert np.flatnonzero(np.asarray(trace.spikes)).tolist() == spikes
    np.testing.assert_allclose(trace.V, V, rtol=0, atol=1e-6)
    np.testing.assert_allclose(trace.states["w"], w, rtol=1e-9, atol=1e-9)
