"""brainpy.state's counterparts of zoo neurons, built from a zoo model's parameters, run the brainstate way.

Used only when ``brainpy`` is importable (install it in a separate environment: it may pin another JAX).
Each counterpart gets the zoo model's parameters converted to brainunit quantities, so both libraries
integrate the same equations and spike at about the same rate (the suite records both firing rates).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from diffbrain import zoo

VERSIONS = ("brainpy", "brainstate", "brainunit")
"""Packages whose versions a record of a brainpy measurement names."""

METHOD = "brainpy.state"


def unavailable() -> str | None:
    """Why brainpy.state cannot be benchmarked here, or None when it can."""
    if importlib.util.find_spec("brainpy") is None:
        return "brainpy is not installed (pip install brainpy, in an environment of its own)"
    try:
        import brainpy.state  # noqa: F401
    except ImportError as error:
        return f"brainpy.state cannot be imported: {error}"
    return None


def _lif(model: zoo.LIF, n: int, current: float):
    import brainpy.state
    import braintools
    import brainunit as u

    V_rest = np.asarray(model.V_rest) * u.mV
    neuron = brainpy.state.LIFRef(
        n,
        R=1.0 / (np.asarray(model.g_L) * u.nS),
        tau=np.asarray(model.tau) * u.ms,
        tau_ref=np.asarray(model.t_ref) * u.ms,
        V_th=np.asarray(model.V_th) * u.mV,
        V_reset=np.asarray(model.V_reset) * u.mV,
        V_rest=V_rest,
        V_initializer=braintools.init.Constant(V_rest),
    )
    return neuron, current * u.pA


def _gif(model, n: int, current: float):
    import brainpy.state
    import braintools
    import brainunit as u

    def mV(name):
        return np.asarray(getattr(model, name)) * u.mV

    def per_ms(name):
        return np.asarray(getattr(model, name)) * u.kHz

    neuron = brainpy.state.Gif(
        n,
        R=np.asarray(model.R) * u.Mohm,
        tau=np.asarray(model.tau) * u.ms,
        V_rest=mV("V_rest"),
        V_reset=mV("V_reset"),
        V_th_inf=mV("V_th_inf"),
        V_th_reset=mV("V_th_reset"),
        V_th_initializer=braintools.init.Constant(mV("V_th_inf")),
        a=per_ms("a"),
        b=per_ms("b"),
        k1=per_ms("k1"),
        k2=per_ms("k2"),
        R1=np.asarray(model.R1),
        R2=np.asarray(model.R2),
        A1=np.asarray(model.A1) * u.nA,
        A2=np.asarray(model.A2) * u.nA,
        V_initializer=braintools.init.Constant(mV("V_rest")),
        I1_initializer=braintools.init.Constant(0.0 * u.nA),
        I2_initializer=braintools.init.Constant(0.0 * u.nA),
    )
    return neuron, current * u.nA


def _hh(model, n: int, current: float):
    import brainpy.state
    import braintools
    import brainunit as u

    # brainpy.state.HH has no membrane area: µF, mS and µA stand for µF/cm², mS/cm² and µA/cm².
    neuron = brainpy.state.HH(
        n,
        ENa=np.asarray(model.E_Na) * u.mV,
        gNa=np.asarray(model.g_Na) * u.mS,
        EK=np.asarray(model.E_K) * u.mV,
        gK=np.asarray(model.g_K) * u.mS,
        EL=np.asarray(model.E_L) * u.mV,
        gL=np.asarray(model.g_L) * u.mS,
        V_th=np.asarray(model.spike_threshold) * u.mV,
        C=np.asarray(model.C) * u.uF,
        V_initializer=braintools.init.Constant(np.asarray(model.V_init) * u.mV),
    )
    return neuron, current * u.uA


_COUNTERPARTS = {"lif": _lif, "gif": _gif, "hh": _hh}


def counterpart_missing(name: str) -> str | None:
    """Why zoo model ``name`` has no brainpy.state counterpart here, or None when it has one."""
    if name not in _COUNTERPARTS:
        return f"no brainpy.state counterpart of {name!r} is set up in diffbrain.bench.brainpy_peer"
    return None


def population_run(
    name: str, model: zoo.AbstractNeuron, current: float, n: int, steps: int, dt: float
) -> Callable[[], Float[Array, " n"]]:
    """A jitted brainstate run of ``n`` counterparts of ``model`` for ``steps`` steps of ``dt`` ms.

    The neurons are reset at the start of each call and driven by the constant ``current`` (in the zoo
    model's ``input_unit``); the loop is `brainstate.transform.for_loop` under `brainstate.transform.jit`,
    accumulating each neuron's spike count (so memory stays O(n)).

    Returns:
        A zero-argument function returning the spike count per neuron, shape ``[n]``.
    """
    import brainstate
    import brainunit as u

    neuron, drive = _COUNTERPARTS[name](model, n, current)
    step_ms = dt * u.ms
    with brainstate.environ.context(dt=step_ms):
        neuron.init_state()
    count = brainstate.ShortTermState(jnp.zeros(n, jnp.float32))

    def step(i):
        with brainstate.environ.context(i=i, t=i * step_ms):
            count.value = count.value + u.get_magnitude(neuron(drive))

    @brainstate.transform.jit
    def simulate():
        neuron.reset_state()
        count.value = jnp.zeros(n, jnp.float32)
        brainstate.transform.for_loop(step, jnp.arange(steps))
        return count.value

    def run():
        with brainstate.environ.context(dt=step_ms):
            return simulate()

    return run
