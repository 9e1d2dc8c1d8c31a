"""Suite "ops": the event-driven synaptic product ``y = sᵀW`` and its gradients, vs dense and sparse peers.

Grid: n × n networks with n = 4,000 (p = 2%), 20,000 and 100,000 (400 synapses per row; 1,000 per row
too with ``full``), firing fractions 0.5%, 2% and 10%, one shared (homogeneous) or per-synapse
(heterogeneous) float32 weights. Methods:

* ``diffbrain``: `diffbrain.ops.event_matvec` with the automatic backend, and ``diffbrain.<backend>``
  for each other backend usable here. When the automatic backend is not the compiled kernel these records
  stand for (``cpu`` on a CPU, ``pallas`` on a GPU: a C++ compiler missing, say) but its ``reference``
  fallback, ``diffbrain`` and the ``lax.scan`` peer (which runs on it) are skipped with the reason
  (`automatic_fallback`), and ``reference`` is measured under its own name;
* ``dense``: ``s @ W`` with a dense matrix, up to n = 20,000 on CPU (1.6 GB in float32; at n = 100,000 it
  would need 40 GB: skipped with that reason) and up to `dense_limit` on an accelerator;
* ``bcoo``: ``s @ W`` with `jax.experimental.sparse.BCOO`; ``bcsr``: ``Wᵀs`` with its BCSR (not in quick
  mode);
* ``segment_sum``: every synapse's ``w·s[pre]`` summed per postsynaptic neuron (`jax.ops.segment_sum`);
* ``numba``: a plain loop on NumPy arrays — for each spiking row, add its weights into ``y`` — the
  near-the-metal reference on CPU (skipped when numba is not importable, and on an accelerator);
* ``brainevent``: its binary-event CSR product (skipped when brainevent is not importable).

A method other than the automatic ``diffbrain`` that fails in any metric (out of memory, a VJP it lacks) is
left out of its case with a skipped record giving the reason; the case keeps the other methods' numbers.

Metrics (s, medians after warm-up, timed in turns): ``step_time`` — per step of a jitted `lax.scan` over
different spike vectors, as a simulation uses it (``STEPS`` steps; ``DENSE_STEPS`` for the methods that
touch every synapse); ``call_time`` — one forward call; ``weight_grad_time`` — the VJP w.r.t. the weights;
``spike_vjp_time`` — the VJP w.r.t. float spikes; ``csr_matvec_time`` (diffbrain) — the plain product the
spike VJP is compared with; ``zeros_time`` (diffbrain) — a jitted ``jnp.zeros(nnz)``, what XLA pays to
produce an nnz-sized output, the floor of a weight gradient in CSR layout; ``silent_grad_time``
(diffbrain) — the weight gradient when no neuron spiked: its zeroed ``[nnz]`` output alone, the method's
own floor (on ``cpu`` below ``zeros_time`` for fresh memory, see `diffbrain.ops.kernels.cpu.data_grad`);
``scan_grad_time`` — per step, the gradient w.r.t. the weights of a loss through the ``step_time`` scan
(``Σ_t ȳ·v_t``, the same spikes; the loss is linear in ``v``, so the gradient needs no forward value and
XLA drops the forward products: it times the reverse pass): diffbrain's through `diffbrain.ops.event_scan`
(on ``cpu``, each step's gradient added in place on the spiking rows; a backend without an in-place
``data_grad_add`` — ``pallas``, ``reference`` — adds a fresh ``[nnz]`` gradient array per reverse step to
the running total), and as the peer ``lax.scan`` the same loss through `lax.scan`'s own reverse pass (with
diffbrain's automatic backend: an ``[nnz]`` cotangent per step, added to a running sum).
Ratios (×, a time over another): ``ratio_vs_<peer>`` of each diffbrain method's step and call times (< 1:
diffbrain faster), ``grad_over_forward`` (weight gradient / forward call), ``grad_over_zeros`` (weight
gradient / zeros), ``grad_over_silent`` (weight gradient / silent gradient: what the events add),
``spike_vjp_over_csr_matvec``, and ``scan_grad_over_step`` (diffbrain's and lax.scan's weight gradient
through the scan / diffbrain's forward step).

``python -m diffbrain.bench.ops`` prints only diffbrain's forward and backward times side by side (see
`gradient_table`); with ``--scan-steps`` the weight gradient through scans of those lengths
(`scan_gradient_table`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.experimental import sparse

from diffbrain import ops
from diffbrain.ops._backend import _PREFERRED as PREFERRED_BACKENDS
from diffbrain.ops._backend import default as automatic_backend
from diffbrain.ops._backend import probe
from diffbrain.ops.csr import derived
from diffbrain.ops.kernels.reference import row_ids

from .records import Record, firing_fraction, format_params, make_record, positive_int, skipped
from .timing import Timing, compile_seconds, measure_side_by_side

SUITE = "ops"
SIZES = ((4_000, 80), (20_000, 400), (100_000, 400))
"""(n, synapses per row); n = 4,000 is built with connection probability 2% (80 per row on average)."""
FULL_SIZES = (*SIZES, (100_000, 1_000))
FIRING = (0.005, 0.02, 0.10)
WEIGHTS = ("homogeneous", "heterogeneous")
STEPS = 100
DENSE_STEPS = 10
"""Scan steps for the methods whose cost does not depend on the spikes (their per-step time is stable)."""
DENSE_LIMIT = 20_000
"""Largest n with a dense matrix (1.6 GB in float32)."""
QUICK = {"repeats": 3, "quick": True}
DTYPE = jnp.float32
METRICS = ("step_time", "call_time", "weight_grad_time", "spike_vjp_time")
PEERS = ("numba", "brainevent", "segment_sum", "bcoo", "dense")
SUMMARY_RATIOS = (
    "step_time_ratio_vs_numba",
    "step_time_ratio_vs_brainevent",
    "step_time_ratio_vs_segment_sum",
    "step_time_ratio_vs_dense",
    "grad_over_forward",
    "grad_over_zeros",
    "grad_over_silent",
    "spike_vjp_over_csr_matvec",
    "scan_grad_over_step",
)
"""The ratios of the automatic ``diffbrain`` method that `summary` shows."""


KERNEL_FIXES = {
    "cpu": "install a C++ compiler (g++) or point $DIFFBRAIN_CXX at one (the kernel is built on first use)"
}
"""How to make each platform's preferred ops backend usable, by backend name."""


def automatic_fallback() -> str | None:
    """Why diffbrain's automatic ops backend here is the slower ``reference`` instead of the kernel that the
    ``diffbrain`` records stand for (``cpu``, the compiled kernel, on a CPU; ``pallas`` on a GPU), or None
    when it is that kernel (or the platform has none: a TPU runs ``reference`` by design).

    A suite gives the records it would time on the automatic backend ``status="skipped"`` with this reason
    instead of numbers (ops, sim, network_gradient, learn's CSR cases): under the kernel's method names, a
    fallback's times (~25x slower on CPU) would replace the kernel's when merged into a results folder.
    """
    kernel = PREFERRED_BACKENDS.get(jax.default_backend())
    automatic = automatic_backend()
    if kernel is None or automatic == kernel:
        return None
    why = probe(kernel)[1]
    fix = KERNEL_FIXES.get(kernel, f"make the {kernel!r} backend usable")
    return (
        f"the automatic ops backend is {automatic!r}, not diffbrain's {kernel!r} kernel"
        + (f", which is unavailable ({why})" if why else "")
        + f"; {fix}, then rerun"
    )


def as_skipped(records: Sequence[Record], reason: str) -> list[Record]:
    """``records`` as skipped ones (the same suite, case, method, metric, unit, params and dtype, no value)
    saying ``reason``."""
    return [
        skipped(r.suite, r.case, r.method, r.metric, r.unit, reason, params=r.params, dtype=r.dtype)
        for r in records
    ]


class Method(NamedTuple):
    """A way to compute ``y = sᵀW``: ``forward(weights, structure, spikes)`` on JAX arrays, differentiable
    in ``weights`` and in float ``spikes``; ``dense_cost``: its cost does not depend on the spikes."""

    forward: Callable
    weights: jax.Array
    structure: tuple
    dense_cost: bool


class Case(NamedTuple):
    n: int
    per_row: int
    firing: float
    weights: str

    @property
    def name(self) -> str:
        return f"n={self.n}/k={self.per_row}/firing={self.firing:.1%}/{self.weights}"


def build(n: int, per_row: int, weights: str, key: jax.Array) -> ops.CSR:
    """The benchmark network: fixed probability at n = 4,000, fixed out-degree above; weights U(0, 1) nS."""
    if n == SIZES[0][0]:
        W = ops.CSR.fixed_prob(key, n, n, per_row / n, weight=0.5)
    else:
        W = ops.CSR.fixed_out_degree(key, n, n, per_row, weight=0.5)
    if weights == "heterogeneous":
        W = W.with_data(jax.random.uniform(jax.random.fold_in(key, 1), (W.nnz,), DTYPE))
    return W


def _as_float(spikes):
    return spikes.astype(DTYPE) if spikes.dtype == jnp.bool_ else spikes


def diffbrain_method(W: ops.CSR, backend: str | None) -> Method:
    """`diffbrain.ops.event_matvec` on ``W``'s structure with ``backend`` (None: the automatic one)."""

    def forward(data, structure, spikes):
        with derived(W):  # W's checked structure, passed as arguments so that XLA cannot fold it
            return ops.event_matvec(spikes, ops.CSR(*structure, data, W.shape), backend=backend)

    return Method(forward, W.data, (W.indptr, W.indices), False)


def jax_methods(W: ops.CSR, quick: bool) -> tuple[dict[str, Method], dict[str, str]]:
    """The JAX methods for ``W``, and the reasons of those skipped."""
    n_pre, n_post = W.shape
    rows = row_ids(W.indptr, W.nnz)

    def segment_sum(data, structure, spikes):
        rows, indices = structure
        return jax.ops.segment_sum(data * _as_float(spikes)[rows], indices, num_segments=n_post)

    def bcoo(data, structure, spikes):
        matrix = sparse.BCOO((jnp.broadcast_to(data, (W.nnz,)), structure[0]), shape=W.shape)
        return _as_float(spikes) @ matrix

    def bcsr(data, structure, spikes):
        matrix = sparse.BCSR((jnp.broadcast_to(data, (W.nnz,)), *structure), shape=W.shape)
        # sᵀW as Wᵀs: BCSR multiplies only from the left
        return sparse.bcsr_dot_general(matrix, _as_float(spikes), dimension_numbers=(([0], [0]), ([], [])))

    def dense(matrix, structure, spikes):
        return _as_float(spikes) @ matrix

    skips = {}
    if (fallback := automatic_fallback()) is None:
        methods = {"diffbrain": diffbrain_method(W, None)}
        automatic = automatic_backend()
    else:  # every usable backend by its own name
        methods, automatic = {}, None
        skips |= {"diffbrain": fallback, "lax.scan": fallback}
    # each other backend by name; the automatic one is already measured as "diffbrain"
    others = [name for name in ops.backends() if name != automatic]
    methods |= {f"diffbrain.{name}": diffbrain_method(W, name) for name in others}
    # in quick mode the reference backend (= segment_sum, which stays) is measured for n = 4,000 only
    if quick and n_pre > SIZES[0][0] and methods.pop("diffbrain.reference", None) is not None:
        skips["diffbrain.reference"] = (
            "quick mode: the reference backend is segment_sum, measured for n = 4,000"
        )
    methods["segment_sum"] = Method(segment_sum, W.data, (rows, W.indices), True)
    coordinates = jnp.stack([rows, W.indices], axis=1)
    methods["bcoo"] = Method(bcoo, W.data, (coordinates,), True)
    if quick:
        skips["bcsr"] = "quick mode: jax.experimental.sparse is measured as BCOO"
    else:
        methods["bcsr"] = Method(bcsr, W.data, (W.indices, W.indptr), True)
    if n_pre * n_post <= dense_limit() ** 2:
        methods["dense"] = Method(dense, W.to_dense(), (), True)
    else:
        gigabytes = n_pre * n_post * jnp.dtype(DTYPE).itemsize / 1e9
        skips["dense"] = (
            f"a dense {n_pre}×{n_post} matrix needs {gigabytes:.0f} GB (and its gradient as much again); "
            f"measured up to n = {dense_limit():,}"
        )
    return methods, skips


def dense_limit() -> int:
    """The largest n with a dense n × n matrix: `DENSE_LIMIT` on CPU; on an accelerator, the largest whose
    matrix, its gradient and a spare copy (3 n² floats) fit in the device's memory."""
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if not stats or "bytes_limit" not in stats:
        return DENSE_LIMIT
    return int((stats["bytes_limit"] / (3 * jnp.dtype(DTYPE).itemsize)) ** 0.5)


def jax_runs(method: Method, spikes: jax.Array, x: jax.Array, cotangent: jax.Array) -> dict[str, Callable]:
    """Zero-argument timed calls of ``method`` for each metric; arrays are jit arguments, not constants."""
    forward, weights, structure = method.forward, method.weights, method.structure
    steps = spikes[:DENSE_STEPS] if method.dense_cost else spikes

    @jax.jit
    def scan(weights, structure, steps):
        def body(v, s):
            return 0.9 * v + forward(weights, structure, s), None

        return jax.lax.scan(body, jnp.zeros(cotangent.shape, DTYPE), steps)[0]

    call = jax.jit(forward)
    weight_vjp = jax.jit(lambda w, st, s, ct: jax.vjp(lambda w: forward(w, st, s), w)[1](ct)[0])
    spike_vjp = jax.jit(lambda w, st, x, ct: jax.vjp(lambda x: forward(w, st, x), x)[1](ct)[0])
    first = spikes[0]  # sliced once here: an eager slice inside the timed call added ~60 µs to it
    return {
        "step_time": lambda: scan(weights, structure, steps),
        "call_time": lambda: call(weights, structure, first),
        "weight_grad_time": lambda: weight_vjp(weights, structure, first, cotangent),
        "spike_vjp_time": lambda: spike_vjp(weights, structure, x, cotangent),
    }


BASELINES = ("csr_matvec_time", "zeros_time", "silent_grad_time")
"""The diffbrain-only metrics that the gradients are compared with (see the module docstring)."""


def baseline_runs(W: ops.CSR, x: jax.Array, cotangent: jax.Array, backend: str | None) -> dict[str, Callable]:
    """Zero-argument timed calls of `BASELINES`: ``csr_matvec(x, W)``, ``jnp.zeros(nnz)`` and the weight
    gradient of `event_matvec` without any spike."""
    matvec = jax.jit(lambda W, x: ops.csr_matvec(x, W, backend=backend))
    zeros = jax.jit(lambda data: jnp.zeros(W.indices.shape, data.dtype))
    silent = jnp.zeros((1, W.shape[0]), bool)
    silent_grad = jax_runs(diffbrain_method(W, backend), silent, x, cotangent)["weight_grad_time"]
    return {
        "csr_matvec_time": lambda: matvec(W, x),
        "zeros_time": lambda: zeros(W.data),
        "silent_grad_time": silent_grad,
    }


def scan_gradient_runs(W: ops.CSR, spikes: jax.Array, cotangent: jax.Array, backend: str | None):
    """Zero-argument timed calls of the gradient w.r.t. ``W.data`` of ``Σ_t ȳ·v_t`` with ``v_t = 0.9·v_{t−1}
    + sₜᵀW`` over the scan of ``spikes``, by name: through ``"event_scan"`` and through ``"lax.scan"``."""

    def step(params, v, s):
        W, cotangent = params
        v = 0.9 * v + ops.event_matvec(s, W, backend=backend)
        return v, jnp.dot(cotangent, v)

    def loss(data, W, cotangent, spikes, scan):
        params = (W.with_data(data), cotangent)
        return jnp.sum(scan(step, params, jnp.zeros(cotangent.shape, DTYPE), spikes)[1])

    def lax_scan(step, params, v, spikes):
        return jax.lax.scan(lambda v, s: step(params, v, s), v, spikes)

    grads = {
        scan: jax.jit(jax.grad(functools.partial(loss, scan=scan))) for scan in (ops.event_scan, lax_scan)
    }
    return {  # arrays as jit arguments, not constants
        "event_scan": lambda: grads[ops.event_scan](W.data, W, cotangent, spikes),
        "lax.scan": lambda: grads[lax_scan](W.data, W, cotangent, spikes),
    }


@functools.cache
def _numba_kernels() -> SimpleNamespace:
    """The numba loops, compiled once per process."""
    import numba

    # `data` holds one weight per synapse, or one shared weight (`data[0]`, `shared`), as W.data does: the
    # loops then read one number, and the weight gradient `g` is one number too, as diffbrain's is.

    @numba.njit
    def add_spiking_rows(indptr, indices, data, shared, s, y):
        for i in range(s.size):
            if s[i]:
                for k in range(indptr[i], indptr[i + 1]):
                    y[indices[k]] += data[0] if shared else data[k]

    @numba.njit
    def simulate(indptr, indices, data, shared, steps, n_post):
        v = np.zeros(n_post, np.float32)
        y = np.zeros(n_post, np.float32)
        for t in range(steps.shape[0]):
            y[:] = 0.0
            add_spiking_rows(indptr, indices, data, shared, steps[t], y)
            v = np.float32(0.9) * v + y
        return v

    @numba.njit
    def weight_grad(indptr, indices, shared, s, cotangent, g):
        for i in range(s.size):
            if s[i]:
                for k in range(indptr[i], indptr[i + 1]):
                    if shared:
                        g[0] += cotangent[indices[k]]
                    else:
                        g[k] = cotangent[indices[k]]
        return g

    @numba.njit
    def row_dot(indptr, indices, data, shared, cotangent):
        r = np.zeros(indptr.size - 1, np.float32)
        for i in range(r.size):
            total = np.float32(0.0)
            for k in range(indptr[i], indptr[i + 1]):
                total += (data[0] if shared else data[k]) * cotangent[indices[k]]
            r[i] = total
        return r

    return SimpleNamespace(
        add_spiking_rows=add_spiking_rows, simulate=simulate, weight_grad=weight_grad, row_dot=row_dot
    )


def numba_runs(W: ops.CSR, spikes: np.ndarray, cotangent: np.ndarray) -> dict[str, Callable]:
    """The numba loops (step, call, weight gradient, spike VJP) on NumPy copies of ``W``."""
    kernels = _numba_kernels()
    indptr, indices = np.asarray(W.indptr), np.asarray(W.indices)
    shared = W.homogeneous  # one weight for all synapses: read once, its gradient one number
    data = np.asarray(W.data, np.float32).reshape(-1).copy()
    n_post, first = W.shape[1], spikes[0]

    def call():
        y = np.zeros(n_post, np.float32)
        kernels.add_spiking_rows(indptr, indices, data, shared, first, y)
        return y

    def weight_grad():
        g = np.zeros(1 if shared else indices.size, np.float32)
        return kernels.weight_grad(indptr, indices, shared, first, cotangent, g)

    return {
        "step_time": lambda: kernels.simulate(indptr, indices, data, shared, spikes, n_post),
        "call_time": call,
        "weight_grad_time": weight_grad,
        "spike_vjp_time": lambda: kernels.row_dot(indptr, indices, data, shared, cotangent),
    }


def brainevent_method(W: ops.CSR) -> Method:
    """brainevent's event CSR: ``BinaryArray(s) @ CSR``.

    The weights and the ``[nnz]`` column indices are jit arguments, as diffbrain's are: closed over, they
    were embedded as constants in every compiled program (at nnz = 4·10⁸, ~30 s of compile per jit). Only
    ``indptr`` (``[n + 1]``) stays concrete: brainevent reads it on the host.
    """
    import brainevent

    def forward(data, structure, spikes):
        (indices,) = structure
        matrix = brainevent.CSR((data, indices, W.indptr), shape=W.shape)
        events = brainevent.BinaryArray(spikes) if spikes.dtype == jnp.bool_ else spikes
        return events @ matrix

    return Method(forward, W.data, (W.indices,), False)


def unavailable(module: str) -> str | None:
    """Why ``module`` cannot be benchmarked here, or None."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed (optional peer)"
    return None


def spike_vectors(key: jax.Array, n: int, firing: float) -> tuple[jax.Array, jax.Array]:
    """``STEPS`` different bool spike vectors with the firing fraction, and a float (surrogate) vector."""
    steps = jax.random.uniform(key, (STEPS, n)) < firing
    return steps, steps[0].astype(DTYPE)


def run_case(case: Case, W: ops.CSR, repeats: int = 5, quick: bool = False) -> list[Record]:
    """Time every method of one case side by side; returns timing and ratio records."""
    key = jax.random.key(case.n)
    spikes, x = spike_vectors(key, case.n, case.firing)
    cotangent = jax.random.normal(jax.random.fold_in(key, 2), (case.n,), DTYPE)
    methods, skips = jax_methods(W, quick)
    runs = {name: jax_runs(method, spikes, x, cotangent) for name, method in methods.items()}
    if (reason := unavailable("brainevent")) is None:
        try:
            runs["brainevent"] = jax_runs(brainevent_method(W), spikes, x, cotangent)
        except Exception as error:  # an optional peer that fails to set up is reported, not fatal
            reason = _failure("brainevent", "its setup", error)
    if reason is not None:
        skips["brainevent"] = reason
    if jax.default_backend() != "cpu":
        skips["numba"] = "the numba loop is the CPU reference; this run is on an accelerator"
    elif (reason := unavailable("numba")) is None:
        runs["numba"] = numba_runs(W, np.asarray(spikes), np.asarray(cotangent))
    else:
        skips["numba"] = reason
    for name in [name for name in runs if name.startswith("diffbrain")]:
        backend = None if name == "diffbrain" else name.split(".", 1)[1]
        scans = scan_gradient_runs(W, spikes, cotangent, backend)
        runs[name] |= baseline_runs(W, x, cotangent, backend) | {"scan_grad_time": scans["event_scan"]}
        if name == "diffbrain":  # the peer: JAX's own reverse pass through lax.scan, same kernels
            runs["lax.scan"] = {"scan_grad_time": scans["lax.scan"]}
    warmup_compile = _warm_up_others(runs, skips)

    fields = dict(
        params=format_params(dict(n=case.n, per_row=case.per_row, firing=case.firing, weights=case.weights)),
        dtype=jnp.dtype(DTYPE).name,
    )
    timings: dict[str, dict[str, Timing]] = {}
    for metric in (*METRICS, *BASELINES, "scan_grad_time"):
        fns = {name: metric_runs[metric] for name, metric_runs in runs.items() if metric in metric_runs}
        for name, timing in measure_side_by_side(fns, repeats).items():
            compile_s = timing.compile + warmup_compile.get(name, {}).get(metric, 0.0)
            timings.setdefault(name, {})[metric] = dataclasses.replace(timing, compile=compile_s)
    records = []
    for name, by_metric in timings.items():
        peers = ("numba",) if name == "numba" else ("brainevent",) if name == "brainevent" else ()
        for metric, timing in by_metric.items():
            per_step = STEPS if metric in ("step_time", "scan_grad_time") else 1
            if metric == "step_time" and name in methods and methods[name].dense_cost:
                per_step = min(DENSE_STEPS, STEPS)  # the steps `jax_runs` scans (all of them, if fewer)
            records.append(
                make_record(
                    SUITE,
                    case.name,
                    name,
                    metric,
                    timing.median / per_step,
                    "s",
                    repeats=timing.repeats,
                    min=timing.min / per_step,
                    max=timing.max / per_step,
                    iqr=timing.iqr / per_step,
                    peers=peers,
                    note=(
                        # JAX's compile events do not see numba's JIT (it compiles in the warm-up calls)
                        "compile not measured (numba)"
                        if name == "numba"
                        else f"compile {timing.compile:.2f} s"
                    )
                    + (f"; per step of {per_step}" if per_step > 1 else ""),
                    **fields,
                )
            )
    records += ratio_records(case, _values(records), fields)
    records += [
        skipped(SUITE, case.name, name, "step_time", "s", reason, **fields) for name, reason in skips.items()
    ]
    return records


def _failure(name: str, where: str, error: Exception) -> str:
    """The reason recorded for method ``name`` left out after ``error`` in ``where``."""
    return f"{name} failed in {where}: {type(error).__name__}: {str(error)[:200]}"


def _warm_up_others(
    runs: dict[str, dict[str, Callable]], skips: dict[str, str]
) -> dict[str, dict[str, float]]:
    """Call every metric of each method but the automatic ``diffbrain`` once, each method in its own try.

    A method that fails in any metric (out of memory, a VJP it lacks, …) is removed from ``runs`` and its
    reason put in ``skips``, so the case keeps the other methods' numbers. Returns the compile time of these
    calls (tracing, lowering and XLA compilation, `compile_seconds`), s, by method and metric, to add to the
    compile time `measure_side_by_side` reports: its warm-up finds them compiled.
    """
    compile_s: dict[str, dict[str, float]] = {}
    for name in [name for name in runs if name != "diffbrain"]:
        try:
            for metric, run in runs[name].items():
                with compile_seconds() as durations:
                    jax.block_until_ready(run())
                compile_s.setdefault(name, {})[metric] = sum(durations)
        except Exception as error:  # the others' numbers must not be lost with this method's
            del runs[name]
            compile_s.pop(name, None)
            skips[name] = _failure(name, metric, error)
    return compile_s


def _values(records: Sequence[Record]) -> dict[str, dict[str, float]]:
    values: dict[str, dict[str, float]] = {}
    for record in records:
        values.setdefault(record.method, {})[record.metric] = record.value
    return values


def ratio_records(case: Case, values: dict[str, dict[str, float]], fields: dict) -> list[Record]:
    """Time ratios: each diffbrain method vs each peer (step and call), gradient / forward, VJP / matvec."""
    records = []

    def ratio(method, metric, value, note):
        records.append(make_record(SUITE, case.name, method, metric, value, "x", note=note, **fields))

    for method, own in values.items():
        if "weight_grad_time" in own and "call_time" in own:
            ratio(
                method,
                "grad_over_forward",
                own["weight_grad_time"] / own["call_time"],
                "weight VJP / forward",
            )
        if "weight_grad_time" in own and "zeros_time" in own:
            note = "weight VJP / jnp.zeros(nnz) (< 1: its output is zeroed faster than by XLA)"
            ratio(method, "grad_over_zeros", own["weight_grad_time"] / own["zeros_time"], note)
        if "weight_grad_time" in own and "silent_grad_time" in own:
            note = "weight VJP / weight VJP without any spike (its zeroed [nnz] output alone)"
            ratio(method, "grad_over_silent", own["weight_grad_time"] / own["silent_grad_time"], note)
        if "csr_matvec_time" in own and "spike_vjp_time" in own:
            note = "spike VJP / plain CSR matvec"
            ratio(method, "spike_vjp_over_csr_matvec", own["spike_vjp_time"] / own["csr_matvec_time"], note)
        step = own.get("step_time", values.get("diffbrain", {}).get("step_time"))
        if "scan_grad_time" in own and step:
            note = "scan_grad_time / step_time (a weight gradient through the scan / the forward step)"
            ratio(method, "scan_grad_over_step", own["scan_grad_time"] / step, note)
        if not method.startswith("diffbrain"):
            continue
        for peer in PEERS:
            for metric in ("step_time", "call_time"):
                if peer in values and metric in values[peer]:
                    note = f"{metric} over {peer}'s (< 1: diffbrain faster)"
                    ratio(method, f"{metric}_ratio_vs_{peer}", own[metric] / values[peer][metric], note)
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case: step time (µs) of each method, and diffbrain's time ratios and gradient cost (×)."""
    table = frame[frame.status == "ok"]
    shown = table[
        (table.metric == "step_time") | table.metric.isin(SUMMARY_RATIOS) & (table.method == "diffbrain")
    ]
    values = np.where(shown.metric == "step_time", shown.value * 1e6, shown.value)
    label = np.where(shown.metric == "step_time", "µs " + shown.method, shown.metric.str.replace("_", " "))
    table = shown.assign(value=values, column=label)
    return table.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)


GRADIENT_METRICS = (
    "call_time",
    "weight_grad_time",
    "zeros_time",
    "silent_grad_time",
    "spike_vjp_time",
    "csr_matvec_time",
)


def gradient_table(
    sizes: Sequence[tuple[int, int]] = SIZES,
    firing: Sequence[float] = FIRING,
    weights: Sequence[str] = WEIGHTS,
    repeats: int = 9,
    statistic: str = "median",
) -> pd.DataFrame:
    """diffbrain's forward and backward single calls side by side (automatic backend), ms, and their ratios.

    Per case, in turns (`measure_side_by_side`): the forward `event_matvec`, the weight gradient (VJP w.r.t.
    ``W.data``), ``jnp.zeros(nnz)``, the weight gradient without any spike, the VJP w.r.t. float spikes and
    `csr_matvec`; then ``grad/fwd``, ``grad/zeros``, ``grad/silent`` and ``spike vjp/matvec`` (×).
    ``statistic``: ``"median"`` of the timed runs, or ``"min"`` (the least disturbed run, for a machine
    shared with other work).
    """
    if statistic not in ("median", "min"):
        raise ValueError(f"`statistic` must be 'median' or 'min', got {statistic!r}.")
    rows = []
    for n, per_row in sizes:
        for kind in weights:
            W = build(n, per_row, kind, jax.random.key(0))
            for fraction in firing:
                key = jax.random.key(n)
                spikes, x = spike_vectors(key, n, fraction)
                cotangent = jax.random.normal(jax.random.fold_in(key, 2), (n,), DTYPE)
                runs = jax_runs(diffbrain_method(W, None), spikes, x, cotangent)
                runs |= baseline_runs(W, x, cotangent, None)
                timings = measure_side_by_side({m: runs[m] for m in GRADIENT_METRICS}, repeats)
                ms = {m: getattr(timings[m], statistic) * 1e3 for m in GRADIENT_METRICS}
                rows.append(
                    {"case": Case(n, per_row, fraction, kind).name}
                    | {f"{m.removesuffix('_time')} ms": v for m, v in ms.items()}
                    | {
                        "grad/fwd": ms["weight_grad_time"] / ms["call_time"],
                        "grad/zeros": ms["weight_grad_time"] / ms["zeros_time"],
                        "grad/silent": ms["weight_grad_time"] / ms["silent_grad_time"],
                        "spike vjp/matvec": ms["spike_vjp_time"] / ms["csr_matvec_time"],
                    }
                )
    return pd.DataFrame(rows).set_index("case")


def scan_gradient_table(
    sizes: Sequence[tuple[int, int]] = SIZES,
    firing: Sequence[float] = FIRING,
    weights: Sequence[str] = ("heterogeneous",),
    steps: Sequence[int] = (STEPS, 10 * STEPS),
    repeats: int = 3,
) -> pd.DataFrame:
    """Per step of a scan of ``steps`` steps (ms, medians, in turns): the forward step, the weight gradient
    through `ops.event_scan` and through `lax.scan` (`scan_gradient_runs`: the reverse pass), and their
    ratios to the forward step (×). The gradient pays one ``[nnz]`` allocation per scan, which longer scans
    amortize."""
    rows = []
    for n, per_row in sizes:
        for kind in weights:
            W = build(n, per_row, kind, jax.random.key(0))
            for fraction in firing:
                for length in steps:
                    key = jax.random.key(n)
                    spikes = jax.random.uniform(key, (length, n)) < fraction
                    cotangent = jax.random.normal(jax.random.fold_in(key, 2), (n,), DTYPE)
                    runs = jax_runs(diffbrain_method(W, None), spikes, spikes[0], cotangent)
                    runs = {"step": runs["step_time"]} | scan_gradient_runs(W, spikes, cotangent, None)
                    ms = {m: t.median * 1e3 / length for m, t in measure_side_by_side(runs, repeats).items()}
                    rows.append(
                        {"case": f"{Case(n, per_row, fraction, kind).name}/steps={length}"}
                        | {f"{m} ms": v for m, v in ms.items()}
                        | {f"{m} grad/step": ms[m] / ms["step"] for m in ("event_scan", "lax.scan")}
                    )
    return pd.DataFrame(rows).set_index("case")


def grid_sizes(sizes: Sequence[int] | None, full: bool = False) -> list[tuple[int, int]]:
    """The ``(n, synapses per row)`` sizes of the grid (`FULL_SIZES` if ``full``, else `SIZES`) whose n is in
    ``sizes`` (None: all); ``ValueError`` naming the n that the grid does not have."""
    grid = FULL_SIZES if full else SIZES
    known = sorted({n for n, _ in grid})
    unknown = sorted(set(sizes or ()) - set(known))
    if unknown:
        raise ValueError(f"the ops grid{' (--full)' if full else ''} has n = {known}, got {unknown}")
    return [size for size in grid if sizes is None or size[0] in sizes]


def run(
    sizes: Sequence[tuple[int, int]] = SIZES,
    firing: Sequence[float] = FIRING,
    weights: Sequence[str] = WEIGHTS,
    repeats: int = 5,
    quick: bool = False,
    progress: Callable[[str], None] = lambda line: None,
    on_case: Callable[[list[Record]], object] = lambda records: None,
) -> list[Record]:
    """The ops suite over ``sizes`` × ``weights`` × ``firing`` (see the module docstring); ``on_case`` gets
    each case's records as soon as they are measured (the command line saves them)."""
    records = []
    for n, per_row in sizes:
        for kind in weights:
            W = build(n, per_row, kind, jax.random.key(0))
            for fraction in firing:
                case = Case(n, per_row, fraction, kind)
                progress(case.name)
                measured = run_case(case, W, repeats, quick)
                on_case(measured)
                records += measured
    return records


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m diffbrain.bench.ops", description=gradient_table.__doc__)
    parser.add_argument(
        "--sizes", nargs="+", type=positive_int, help=f"n of {FULL_SIZES} (default: all of {SIZES})"
    )
    parser.add_argument("--full", action="store_true", help=f"the sizes {FULL_SIZES}")
    parser.add_argument(
        "--firing", nargs="+", type=firing_fraction, default=FIRING, help="firing fractions in (0, 1]"
    )
    parser.add_argument("--weights", nargs="+", choices=WEIGHTS, default=WEIGHTS)
    parser.add_argument("--repeats", type=positive_int, default=9)
    parser.add_argument("--min", action="store_true", help="the fastest run instead of the median")
    parser.add_argument(
        "--scan-steps",
        nargs="+",
        type=positive_int,
        help="instead: `scan_gradient_table` for these scan lengths",
    )
    args = parser.parse_args()
    try:
        grid = grid_sizes(args.sizes, args.full)
    except ValueError as error:
        parser.error(f"--sizes: {error}")
    if args.scan_steps:
        table = scan_gradient_table(grid, args.firing, args.weights, args.scan_steps, args.repeats)
    else:
        table = gradient_table(grid, args.firing, args.weights, args.repeats, "min" if args.min else "median")
    with pd.option_context(
        "display.width", 250, "display.max_columns", None, "display.float_format", "{:.3g}".format
    ):
        print(table)
