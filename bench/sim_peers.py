"""The COBA network in peer simulators, run in a subprocess by `diffbrain.bench.sim`.

    PYTHON sim_peers.py SPEC.json OUT.json

``PYTHON`` is an interpreter that has the peer installed (Brian2, BrainPy, NEST); this script imports
neither diffbrain nor JAX unless the peer itself needs it, so it runs in any environment. ``SPEC.json``
names the simulator, the network file (``.npz`` with the exact synapses and initial membrane potentials that
diffbrain simulates: ``pre_e``, ``post_e``, ``pre_i``, ``post_i`` as global neuron indices, ``V0`` in mV) and
the model parameters (mV, ms, nS, pA); every simulator gets the same network, neuron by neuron and synapse by
synapse. ``OUT.json`` receives::

    {"status": "ok", "versions": {...}, "runs": [
        {"duration_ms": 1000.0, "compile_s": 12.3, "run_s": [0.91, 0.93, 0.92], "rates_hz": [16.1, 16.4]}]}

(a spec with ``"model": "microcircuit"`` names a network file written by `sim.export_microcircuit` and
gets one rate per population, plus ``"build_s"``, ``"seed_rates_hz"`` and ``"peak_rss_bytes"``, see
`nest_microcircuit`),
or ``{"status": "skipped", "reason": "..."}`` when the peer is not installed here (never a made-up
number). Per duration: one warm-up run that also compiles (its cost minus a timed run's is ``compile_s``;
Brian2 cpp_standalone reports its C++ build instead; NEST, which compiles nothing, has none), then up to
``repeats`` timed runs from the same initial state, stopped early once ``budget_s`` seconds of timed runs
have passed (at least one). ``run_s`` is the
wall time of the simulation loop only (for cpp_standalone, the time the compiled binary reports for its
``run``; for the others, the Python call that simulates ``duration_ms``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import resource
import sys
import time
import traceback
import zipfile

import numpy as np

SIMULATORS = ("brian2.runtime", "brian2.cpp_standalone", "brainpy", "brainpy.state", "nest")
PACKAGES = {
    "brian2.runtime": ("brian2", "cython"),
    "brian2.cpp_standalone": ("brian2",),
    "brainpy": ("brainpy", "brainevent", "jax"),
    "brainpy.state": ("brainpy", "brainstate", "brainevent", "brainunit", "jax"),
    "nest": ("nest-simulator",),
}
"""The distributions whose versions a simulator's records name."""
MODULES = {
    "brian2.runtime": "brian2",
    "brian2.cpp_standalone": "brian2",
    "brainpy": "brainpy",
    "brainpy.state": "brainpy.state",
    "nest": "nest",
}


class Skip(Exception):
    """The simulator cannot run here; the message says why."""


def versions(simulator: str) -> dict[str, str]:
    found = {}
    for name in PACKAGES[simulator]:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _import(simulator: str):
    module = MODULES[simulator]
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise Skip(f"{module} is not installed in {sys.executable} ({error})") from None


def _timed_runs(simulate, duration_ms: float, repeats: int, budget_s: float, warmup: bool = True):
    """Warm-up run (unless ``warmup`` is False), then timed runs;
    ``simulate(duration_ms) -> (seconds, *spike counts per population)``."""
    warm_s = simulate(duration_ms)[0] if warmup else 0.0
    runs, counts = [], None
    while len(runs) < repeats and (not runs or sum(runs) < budget_s):
        seconds, *counts = simulate(duration_ms)
        runs.append(seconds)
    return warm_s, runs, counts


def _record(duration_ms, compile_s, runs, counts, sizes):
    rates = [count / size / duration_ms * 1000.0 for count, size in zip(counts, sizes, strict=True)]
    return {"duration_ms": duration_ms, "compile_s": compile_s, "run_s": runs, "rates_hz": rates}


# --- Brian2 -----------------------------------------------------------------------------------------------


def _brian2_network(b, net, p):
    """The COBA network in Brian2 units, exponential Euler, spike counts per neuron; fixed object names, so
    that a second cpp_standalone build in the same folder can reuse the object files that did not change."""
    n = net["V0"].size
    namespace = {
        "g_L": p["g_L"] * b.nS,
        "C": p["C"] * b.pF,
        "V_rest": p["V_rest"] * b.mV,
        "V_th": p["V_th"] * b.mV,
        "V_reset": p["V_reset"] * b.mV,
        "E_e": p["E_e"] * b.mV,
        "E_i": p["E_i"] * b.mV,
        "tau_e": p["tau_e"] * b.ms,
        "tau_i": p["tau_i"] * b.ms,
        "I_ext": p["I_ext"] * b.pA,
        "w_e": p["w_e"] * b.nS,
        "w_i": p["w_i"] * b.nS,
    }
    equations = """
    dv/dt = (g_L * (V_rest - v) + ge * (E_e - v) + gi * (E_i - v) + I_ext) / C : volt (unless refractory)
    dge/dt = -ge / tau_e : siemens
    dgi/dt = -gi / tau_i : siemens
    """
    group = b.NeuronGroup(
        n,
        equations,
        threshold="v > V_th",
        reset="v = V_reset",
        refractory=p["t_ref"] * b.ms,
        method="exponential_euler",
        namespace=namespace,
        name="coba",
    )
    group.v = net["V0"] * b.mV
    exc = b.Synapses(group, group, on_pre="ge += w_e", namespace=namespace, name="exc")
    exc.connect(i=net["pre_e"], j=net["post_e"])
    inh = b.Synapses(group, group, on_pre="gi += w_i", namespace=namespace, name="inh")
    inh.connect(i=net["pre_i"], j=net["post_i"])
    monitor = b.SpikeMonitor(group, record=False, name="counts")
    return b.Network(group, exc, inh, monitor, name="net"), monitor


def _counts(monitor, n_e):
    count = np.asarray(monitor.count)
    return int(count[:n_e].sum()), int(count[n_e:].sum())


def brian2_runtime(spec, net):
    b = _import("brian2.runtime")
    b.prefs.codegen.target = "cython"
    b.prefs.core.default_float_dtype = np.float32  # diffbrain's precision (Brian2's default is float64)
    b.defaultclock.dt = spec["params"]["dt"] * b.ms
    network, monitor = _brian2_network(b, net, spec["params"])
    network.store()
    n_e = int(net["n_e"])

    def simulate(duration_ms):
        network.restore()
        start = time.perf_counter()
        network.run(duration_ms * b.ms)
        return time.perf_counter() - start, *_counts(monitor, n_e)

    results = []
    for duration in spec["durations_ms"]:
        warm, runs, counts = _timed_runs(simulate, duration, spec["repeats"], spec["budget_s"])
        compile_s = max(0.0, warm - float(np.median(runs)))
        results.append(_record(duration, compile_s, runs, counts, (n_e, net["V0"].size - n_e)))
    return results


def brian2_cpp_standalone(spec, net):
    b = _import("brian2.cpp_standalone")
    n_e = int(net["n_e"])
    results = []
    for index, duration in enumerate(spec["durations_ms"]):
        # One project folder for every duration; the build time is measured for each (measured: the second
        # build of the 4,000-neuron network took 35 s against 42 s for the first).
        directory = os.path.join(spec["workdir"], "brian2_standalone")
        if index:
            b.device.reinit()
            b.device.activate(directory=directory, build_on_run=False)
        else:
            b.set_device("cpp_standalone", directory=directory, build_on_run=False)
        b.prefs.core.default_float_dtype = np.float32  # diffbrain's precision (Brian2's default is float64)
        b.defaultclock.dt = spec["params"]["dt"] * b.ms
        network, monitor = _brian2_network(b, net, spec["params"])
        network.run(duration * b.ms)
        start = time.perf_counter()
        b.device.build(directory=directory, compile=True, run=False)
        compile_s = time.perf_counter() - start

        def simulate(duration_ms, directory=directory, monitor=monitor):
            b.device.run(directory=directory, with_output=False)
            return b.device._last_run_time, *_counts(monitor, n_e)

        _, runs, counts = _timed_runs(simulate, duration, spec["repeats"], spec["budget_s"])
        results.append(_record(duration, compile_s, runs, counts, (n_e, net["V0"].size - n_e)))
    return results


# --- BrainPy 2.8 and brainpy.state ------------------------------------------------------------------------


def _jax_timed(run, duration, steps, repeats, budget_s, n_e, n):
    """Warm-up (compile) and timed runs of a jitted ``run(steps) -> counts [T, 2]``."""
    import jax

    def simulate(duration_ms):
        start = time.perf_counter()
        counts = np.asarray(jax.block_until_ready(run(steps)))
        return time.perf_counter() - start, int(counts[:, 0].sum()), int(counts[:, 1].sum())

    warm, runs, counts = _timed_runs(simulate, duration, repeats, budget_s)
    return _record(duration, max(0.0, warm - float(np.median(runs))), runs, counts, (n_e, n - n_e))


def brainpy_dyn(spec, net):
    """BrainPy 2.8: `LifRef` + `HalfProjAlignPostMg` with `EventCSRLinear` (brainevent) projections."""
    bp = _import("brainpy")
    import jax.numpy as jnp

    bm = bp.math
    p = spec["params"]
    bm.set_dt(p["dt"])
    n, n_e = net["V0"].size, int(net["n_e"])

    class EINet(bp.DynSysGroup):
        def __init__(self):
            super().__init__()
            self.N = bp.dyn.LifRef(
                n,
                V_rest=p["V_rest"],
                V_reset=p["V_reset"],
                V_th=p["V_th"],
                R=1.0 / p["g_L"],
                tau=p["C"] / p["g_L"],
                tau_ref=p["t_ref"],
                spk_reset="hard",
                method="exp_auto",
                V_initializer=bm.asarray(net["V0"]),
            )

            def projection(pre, post, n_pre, offset, weight, tau, E):
                conn = bp.conn.IJConn(i=pre - offset, j=post)(pre_size=n_pre, post_size=n)
                return bp.dyn.HalfProjAlignPostMg(
                    comm=bp.dnn.EventCSRLinear(conn, weight),
                    syn=bp.dyn.Expon.desc(n, tau=tau),
                    out=bp.dyn.COBA.desc(E=E),
                    post=self.N,
                )

            self.E = projection(net["pre_e"], net["post_e"], n_e, 0, p["w_e"], p["tau_e"], p["E_e"])
            self.I = projection(net["pre_i"], net["post_i"], n - n_e, n_e, p["w_i"], p["tau_i"], p["E_i"])

        def update(self, current):
            spikes = self.N.spike.value  # last step's spikes reach the synapses, as in diffbrain
            self.E(spikes[:n_e])
            self.I(spikes[n_e:])
            self.N(current)
            spikes = self.N.spike.value
            return jnp.stack([spikes[:n_e].sum(), spikes[n_e:].sum()])

    model = EINet()

    def step(i):
        return model.step_run(i, p["I_ext"])

    @bm.jit
    def run(indices):
        bp.reset_state(model)
        return bm.for_loop(step, indices)

    results = []
    for duration in spec["durations_ms"]:
        steps = round(duration / p["dt"])
        results.append(
            _jax_timed(
                lambda steps: run(bm.arange(steps)),
                duration,
                steps,
                spec["repeats"],
                spec["budget_s"],
                n_e,
                n,
            )
        )
    return results


def brainpy_state(spec, net):
    """brainpy.state: `LIFRef` + `AlignPostProj` whose communication is a brainevent binary-event CSR."""
    _import("brainpy.state")
    import brainevent
    import brainpy.state as bps
    import brainstate
    import braintools
    import brainunit as u
    import jax.numpy as jnp

    p = spec["params"]
    n, n_e = net["V0"].size, int(net["n_e"])
    dt = p["dt"] * u.ms

    def csr(pre, post, n_pre, weight):
        """A function making the CSR: brainevent caches a workspace on a CSR object while tracing, which
        leaks a tracer into the next trace (brainevent 0.2.1), so each trace builds its own."""
        order = np.lexsort((post, pre))
        pre, post = pre[order], post[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=n_pre))]).astype(np.int32)
        data = np.full(post.size, weight, np.float32)
        post = post.astype(np.int32)
        return lambda: brainevent.CSR((jnp.asarray(data) * u.nS, post, indptr), shape=(n_pre, n))

    class EINet(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.N = bps.LIFRef(
                n,
                R=1.0 / (p["g_L"] * u.nS),
                tau=p["C"] / p["g_L"] * u.ms,
                tau_ref=p["t_ref"] * u.ms,
                V_th=p["V_th"] * u.mV,
                V_reset=p["V_reset"] * u.mV,
                V_rest=p["V_rest"] * u.mV,
                V_initializer=jnp.asarray(net["V0"], jnp.float32) * u.mV,
                spk_reset="hard",
            )

            def projection(matrix, tau, E):
                return bps.AlignPostProj(
                    comm=lambda spikes: brainevent.BinaryArray(spikes) @ matrix(),
                    syn=bps.Expon.desc(n, tau=tau * u.ms, g_initializer=braintools.init.Constant(0.0 * u.nS)),
                    out=bps.COBA.desc(E=E * u.mV),
                    post=self.N,
                )

            self.E = projection(csr(net["pre_e"], net["post_e"], n_e, p["w_e"]), p["tau_e"], p["E_e"])
            self.I = projection(
                csr(net["pre_i"] - n_e, net["post_i"], n - n_e, p["w_i"]), p["tau_i"], p["E_i"]
            )

        def update(self, current):
            spikes = self.N.get_spike() != 0.0  # last step's spikes reach the synapses, as in diffbrain
            self.E(spikes[:n_e])
            self.I(spikes[n_e:])
            self.N(current)
            spikes = self.N.get_spike()
            return jnp.stack([spikes[:n_e].sum(), spikes[n_e:].sum()])

    model = EINet()
    with brainstate.environ.context(dt=dt):
        brainstate.nn.init_all_states(model)
    current = p["I_ext"] * u.pA

    def step(i):
        with brainstate.environ.context(i=i, t=i * dt):
            return model(current)

    @brainstate.transform.jit
    def simulate(indices):
        return brainstate.transform.for_loop(step, indices)

    def run(steps):
        with brainstate.environ.context(dt=dt):
            brainstate.nn.reset_all_states(model)
            return simulate(jnp.arange(steps))

    results = []
    for duration in spec["durations_ms"]:
        steps = round(duration / p["dt"])
        results.append(_jax_timed(run, duration, steps, spec["repeats"], spec["budget_s"], n_e, n))
    return results


# --- NEST -------------------------------------------------------------------------------------------------


def nest_run(spec, net):
    """NEST `iaf_cond_exp` (one thread), the synapses one to one with delay dt (NEST's minimum), which is
    diffbrain's one-step transmission; runs continue the network (NEST compiles nothing)."""
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        nest = _import("nest")
    p = spec["params"]
    n, n_e = net["V0"].size, int(net["n_e"])
    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    nest.SetKernelStatus({"resolution": p["dt"], "local_num_threads": 1, "print_time": False})
    neurons = nest.Create(
        "iaf_cond_exp",
        n,
        params={
            "C_m": p["C"],
            "g_L": p["g_L"],
            "E_L": p["V_rest"],
            "V_th": p["V_th"],
            "V_reset": p["V_reset"],
            "t_ref": p["t_ref"],
            "E_ex": p["E_e"],
            "E_in": p["E_i"],
            "tau_syn_ex": p["tau_e"],
            "tau_syn_in": p["tau_i"],
            "I_e": p["I_ext"],
        },
    )
    neurons.V_m = net["V0"].astype(float)
    first = neurons[0].global_id
    for pre, post, weight in (
        (net["pre_e"], net["post_e"], p["w_e"]),
        (net["pre_i"], net["post_i"], -p["w_i"]),
    ):
        nest.Connect(
            (pre + first).astype(np.int64),
            (post + first).astype(np.int64),
            "one_to_one",
            {
                "synapse_model": "static_synapse",
                "weight": np.full(pre.size, weight),
                "delay": np.full(pre.size, p["dt"]),
            },
        )
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)

    def simulate(duration_ms):
        recorder.n_events = 0
        start = time.perf_counter()
        nest.Simulate(duration_ms)
        seconds = time.perf_counter() - start
        senders = np.asarray(recorder.events["senders"]) - first
        return seconds, int((senders < n_e).sum()), int((senders >= n_e).sum())

    results = []
    for duration in spec["durations_ms"]:
        _, runs, counts = _timed_runs(simulate, duration, spec["repeats"], spec["budget_s"], warmup=False)
        results.append(_record(duration, 0.0, runs, counts, (n_e, n - n_e)))
    return results


CONNECT_CHUNK = 1 << 22
"""Synapses per `nest.Connect` call of the microcircuit, read from the file as they are connected: NEST gets
them as int64/float64 arrays, 32 bytes per synapse, so the chunks bound that copy to 128 MiB and no array of
the file is ever in memory whole, whatever the network's size."""


MAX_CONNECTIONS_PER_MODEL = 2**27 - 2
"""NEST 3 holds at most this many connections per synapse model and thread ("Too many connections"; the
full-scale microcircuit has 3·10⁸ in one thread): further ones go to copies of ``static_synapse``."""


def _npz_chunks(path: str, names, chunk: int):
    """Yield ``chunk`` entries at a time of the 1-D arrays ``names`` of an ``.npz`` file (one tuple of
    arrays per step, the same entries of each), reading them from the file as they are asked for."""
    with zipfile.ZipFile(path) as archive:
        files = [archive.open(f"{name}.npy") for name in names]
        try:
            dtypes, sizes = [], set()
            for file in files:
                version = np.lib.format.read_magic(file)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(file)
                dtypes.append(dtype)
                sizes.add(int(np.prod(shape)))
            if len(sizes) != 1:
                raise ValueError(f"the arrays {names} of {path} differ in length: {sorted(sizes)}.")
            total = sizes.pop()
            for start in range(0, total, chunk):
                count = min(chunk, total - start)
                yield tuple(
                    np.frombuffer(file.read(count * dtype.itemsize), dtype)
                    for file, dtype in zip(files, dtypes, strict=True)
                )
        finally:
            for file in files:
                file.close()


def _nest_microcircuit_network(nest, p, net, path: str, seed: int, V0):
    """Create and connect the microcircuit in a reset NEST kernel (see `nest_microcircuit`); returns the
    neurons and the spike recorder."""
    dt, offsets = p["dt"], np.asarray(net["offsets"], np.int64)
    nest.ResetKernel()
    nest.SetKernelStatus(
        {
            "resolution": dt,
            "local_num_threads": 1,
            "print_time": False,
            "rng_seed": int(seed),
            "keep_source_table": False,  # nothing reads the connections back: free NEST's copy of sources
        }
    )
    neurons = nest.Create(
        "iaf_psc_exp",
        int(offsets[-1]),
        params={
            "C_m": p["C_m"],
            "tau_m": p["tau_m"],
            "tau_syn_ex": p["tau_syn"],
            "tau_syn_in": p["tau_syn"],
            "E_L": p["E_L"],
            "V_th": p["V_th"],
            "V_reset": p["V_reset"],
            "t_ref": p["t_ref"],
        },
    )
    neurons.V_m = np.asarray(V0, float)
    neurons.I_e = np.repeat(np.asarray(net["I_e"], float), np.diff(offsets))
    first = neurons[0].global_id
    model, in_model, copies = "static_synapse", 0, 0
    for receptor in ("exc", "inh"):
        fields = [f"{field}_{receptor}" for field in ("pre", "post", "weight", "delay")]
        for pre, post, weight, delay in _npz_chunks(path, fields, CONNECT_CHUNK):
            if in_model + pre.size > MAX_CONNECTIONS_PER_MODEL:  # the same static synapse, a new model
                copies += 1
                model, in_model = f"static_synapse_{copies}", 0
                nest.CopyModel("static_synapse", model)
            in_model += pre.size
            nest.Connect(
                pre.astype(np.int64) + first,
                post.astype(np.int64) + first,
                "one_to_one",
                {
                    "synapse_model": model,
                    "weight": weight.astype(float),
                    "delay": np.maximum(1, delay - p["latency_shift_steps"]) * dt,
                },
            )
    bg_rate = np.asarray(net["bg_rate"], float)
    for index, rate in enumerate(bg_rate):
        if rate > 0:
            generator = nest.Create("poisson_generator", params={"rate": float(rate)})
            nest.Connect(
                generator,
                neurons[int(offsets[index]) : int(offsets[index + 1])],
                "all_to_all",
                {"weight": float(net["bg_weight"]), "delay": dt},
            )
    recorder = nest.Create("spike_recorder")
    nest.Connect(neurons, recorder)
    nest.Prepare()
    return neurons, recorder


def nest_microcircuit(spec, net):
    """The Potjans–Diesmann microcircuit in NEST (one thread): `iaf_psc_exp` (exact integration), the
    synapses one to one (``pre_exc``/``post_exc``/``weight_exc`` pA/``delay_exc`` steps, the same for
    ``inh``; multapses kept; the delays ``latency_shift_steps`` shorter, at least one step, for diffbrain's
    latency: see `sim.LATENCY_SHIFT_STEPS`), connected in chunks of `CONNECT_CHUNK`, one
    `poisson_generator` per population (an independent train for every target, ``bg_rate`` Hz ×
    ``bg_weight`` pA, delay dt), ``I_e`` per neuron.

    Once per entry of ``params["seeds"]`` (NEST's ``rng_seed``, with the initial potentials of that seed,
    row ``i`` of ``V0`` ``[seeds, n]`` mV) the network is built anew. The first seed is timed: ``build_s``
    is its creation, connection and NEST's `Prepare` (which sorts the connections), its timed runs are
    `nest.Run` calls continuing the network, and ``rates_hz`` are those of its first run, from the initial
    state, counted from ``rates_from_ms`` on. Every other seed runs once; ``seed_rates_hz`` holds every
    seed's rates, and ``peak_rss_bytes`` the process's peak resident memory."""
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        nest = _import("nest")
    p = spec["params"]
    (duration,) = spec["durations_ms"]  # one per spec: every run after the first continues the network
    offsets = np.asarray(net["offsets"], np.int64)
    V0 = np.asarray(net["V0"], float).reshape(-1, offsets[-1])
    seeds = p["seeds"]
    if len(seeds) != V0.shape[0]:
        raise ValueError(f"{len(seeds)} seeds but {V0.shape[0]} rows of initial potentials in the file.")
    nest.verbosity = nest.VerbosityLevel.ERROR
    record, seed_rates = None, []
    for index, seed in enumerate(seeds):
        start = time.perf_counter()
        neurons, recorder = _nest_microcircuit_network(nest, p, net, spec["network"], seed, V0[index])
        build_s = time.perf_counter() - start
        first, counts = neurons[0].global_id, []  # the first run's spikes per population

        def simulate(duration_ms, recorder=recorder, first=first, counts=counts):
            start = time.perf_counter()
            nest.Run(duration_ms)
            seconds = time.perf_counter() - start
            if not counts:
                events = recorder.events
                counted = np.asarray(events["times"]) > p["rates_from_ms"]
                senders = np.asarray(events["senders"], np.int64)[counted] - first
                population = np.searchsorted(offsets, senders, side="right") - 1
                counts.extend(np.bincount(population, minlength=offsets.size - 1).tolist())
            return seconds, *counts

        repeats = spec["repeats"] if index == 0 else 1
        _, runs, found = _timed_runs(simulate, duration, repeats, spec["budget_s"], warmup=False)
        nest.Cleanup()
        rates = _record(duration - p["rates_from_ms"], 0.0, runs, found, np.diff(offsets))
        seed_rates.append(rates["rates_hz"])
        if record is None:
            record = rates | {"duration_ms": duration, "build_s": build_s}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return [record | {"seed_rates_hz": seed_rates, "peak_rss_bytes": peak}]


RUNNERS = {
    "brian2.runtime": brian2_runtime,
    "brian2.cpp_standalone": brian2_cpp_standalone,
    "brainpy": brainpy_dyn,
    "brainpy.state": brainpy_state,
    "nest": nest_run,
}
MICROCIRCUIT_RUNNERS = {"nest": nest_microcircuit}
"""The simulators of the ``"model": "microcircuit"`` specs (the default model is ``"coba"``)."""


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path) as file:
        spec = json.load(file)
    simulator = spec["simulator"]
    runners = MICROCIRCUIT_RUNNERS if spec.get("model", "coba") == "microcircuit" else RUNNERS
    try:
        if simulator not in runners:
            raise Skip(f"{simulator} has no {spec.get('model', 'coba')} runner in sim_peers.py")
        with np.load(spec["network"]) as data:  # the microcircuit reads its arrays when it needs them
            net = data if runners is MICROCIRCUIT_RUNNERS else {key: data[key] for key in data.files}
            out = {"status": "ok", "versions": versions(simulator), "runs": runners[simulator](spec, net)}
    except Skip as reason:
        out = {"status": "skipped", "reason": str(reason), "versions": versions(simulator)}
    except Exception as error:  # a peer that fails is reported with its error, not fatal to the suite
        lines = traceback.format_exception_only(error)
        out = {
            "status": "skipped",
            "reason": f"{simulator} failed: {''.join(lines).strip()[:400]}",
            "versions": versions(simulator),
        }
    with open(out_path, "w") as file:
        json.dump(out, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
