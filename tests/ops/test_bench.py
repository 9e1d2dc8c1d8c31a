"""The ops benchmark suite on a tiny network: every method runs, agrees, and gives ratio and skip records."""

import functools
import importlib.util
import math
import re
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffbrain.bench import ops as suite
from diffbrain.bench.records import to_frame
from diffbrain.ops._backend import default as automatic_backend
from diffbrain.ops.kernels.reference import row_ids


@pytest.fixture(params=["heterogeneous", "homogeneous"])
def tiny_case(monkeypatch, request):
    monkeypatch.setattr(suite, "unavailable", lambda module: f"{module} left out of this test")
    monkeypatch.setattr(suite, "STEPS", 4)
    case = suite.Case(300, 10, 0.05, request.param)
    return case, suite.build(case.n, case.per_row, case.weights, jax.random.key(0))


@pytest.mark.parametrize(
    "with_numba",
    [
        False,
        pytest.param(
            True,
            marks=[
                pytest.mark.slow,  # compiling the numba loops takes ~10 s
                pytest.mark.skipif(
                    importlib.util.find_spec("numba") is None, reason="numba is not installed"
                ),
            ],
        ),
    ],
)
def test_methods_agree(tiny_case, with_numba):
    _, W = tiny_case
    spikes, x = suite.spike_vectors(jax.random.key(1), W.shape[0], 0.05)
    cotangent = jax.random.normal(jax.random.key(2), (W.shape[1],), suite.DTYPE)
    methods, skips = suite.jax_methods(W, quick=False)
    expected = {"diffbrain", "diffbrain.reference", "segment_sum", "bcoo", "bcsr", "dense"}
    assert expected <= set(methods) and not skips
    assert f"diffbrain.{automatic_backend()}" not in methods  # measured once, as "diffbrain"
    outputs = {name: suite.jax_runs(method, spikes, x, cotangent) for name, method in methods.items()}
    if with_numba:
        outputs["numba"] = suite.numba_runs(W, np.asarray(spikes), np.asarray(cotangent))
    expected = {metric: outputs["dense"][metric]() for metric in ("call_time", "spike_vjp_time")}
    for name, runs in outputs.items():
        for metric, value in expected.items():
            np.testing.assert_allclose(
                np.asarray(runs[metric]()).ravel(), np.ravel(value), rtol=1e-4, atol=1e-5
            )
        weight_grad = np.asarray(runs["weight_grad_time"]()).ravel()
        if name != "dense":  # the dense gradient is a matrix
            np.testing.assert_allclose(weight_grad, outputs["segment_sum"]["weight_grad_time"](), rtol=1e-5)


def test_scan_gradients_agree(tiny_case):
    """event_scan's and lax.scan's weight gradients through the timed scan are the same numbers."""
    _, W = tiny_case
    spikes, _ = suite.spike_vectors(jax.random.key(1), W.shape[0], 0.05)
    cotangent = jax.random.normal(jax.random.key(2), (W.shape[1],), suite.DTYPE)
    runs = suite.scan_gradient_runs(W, spikes, cotangent, None)
    fast, plain = np.asarray(runs["event_scan"]()), np.asarray(runs["lax.scan"]())
    assert fast.shape == W.data.shape and np.any(fast != 0)  # [nnz], or one number for a shared weight
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)


def test_run_case_records(tiny_case):
    case, W = tiny_case
    records = suite.run_case(case, W, repeats=1)
    frame = to_frame(records)
    ok = frame[frame.status == "ok"]
    assert {"diffbrain", "segment_sum", "bcoo", "dense"} <= set(ok.method)
    assert set(frame[frame.status == "skipped"].method) == {"numba", "brainevent"}
    assert all(math.isfinite(value) and value > 0 for value in ok.value)
    ratios = {
        "step_time_ratio_vs_segment_sum",
        "grad_over_forward",
        "grad_over_zeros",
        "grad_over_silent",
        "spike_vjp_over_csr_matvec",
        "scan_grad_over_step",
    }
    assert ratios <= set(ok[ok.method == "diffbrain"].metric)
    assert set(ok[ok.method == "lax.scan"].metric) == {"scan_grad_time", "scan_grad_over_step"}
    table = suite.summary(frame)
    assert list(table.index) == [case.name] and "µs diffbrain" in table.columns


def test_gradient_table():
    table = suite.gradient_table(
        [(300, 10)], firing=[0.05], weights=["homogeneous"], repeats=1, statistic="min"
    )
    assert list(table.index) == ["n=300/k=10/firing=5.0%/homogeneous"]
    columns = {"call ms", "weight_grad ms", "zeros ms", "silent_grad ms", "grad/fwd", "grad/silent"}
    assert columns | {"spike vjp/matvec"} <= set(table.columns)
    assert np.isfinite(table.to_numpy()).all() and (table.to_numpy() > 0).all()
    with pytest.raises(ValueError, match="statistic"):
        suite.gradient_table([(300, 10)], statistic="mean")


def test_scan_gradient_table():
    table = suite.scan_gradient_table([(300, 10)], firing=[0.05], steps=[3, 6], repeats=1)
    assert list(table.index) == [f"n=300/k=10/firing=5.0%/heterogeneous/steps={t}" for t in (3, 6)]
    assert {"step ms", "event_scan ms", "lax.scan ms", "event_scan grad/step", "lax.scan grad/step"} == set(
        table.columns
    )
    assert np.isfinite(table.to_numpy()).all() and (table.to_numpy() > 0).all()


def test_quick_methods_when_the_automatic_backend_is_the_reference(monkeypatch):
    # e.g. no C++ compiler: "diffbrain" (and the lax.scan peer, which runs on it) is skipped with the reason
    # rather than measured as if it were the compiled kernel; the reference backend keeps its own name
    monkeypatch.setattr(suite, "automatic_backend", lambda: "reference")
    W = suite.ops.CSR.fixed_out_degree(jax.random.key(0), suite.SIZES[0][0] + 1, 50, 3, weight=0.5)
    methods, skips = suite.jax_methods(W, quick=True)
    assert "diffbrain" not in methods
    assert skips["diffbrain"] == skips["lax.scan"] == suite.automatic_fallback()
    assert "DIFFBRAIN_CXX" in skips["diffbrain"]
    assert "diffbrain.reference" in skips  # quick mode above n = 4,000: the reference backend is segment_sum


@pytest.fixture
def fake_brainevent(monkeypatch):
    """A stand-in ``brainevent`` module (``CSR``, ``BinaryArray``; ``sᵀW`` by `jax.ops.segment_sum`) that
    records the arrays its CSR is built from; ``trace_s`` sleeps that long per trace (a slow compile) and
    ``failing_vjp`` makes every VJP raise (a peer that works forward only)."""
    module = types.ModuleType("brainevent")
    module.built, module.trace_s, module.failing_vjp = [], 0.0, False

    @functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
    def product(data, indices, rows, spikes, n_post):
        return jax.ops.segment_sum(data * spikes[rows], indices, num_segments=n_post)

    def product_fwd(*args):
        return product(*args), None

    def product_bwd(n_post, residuals, cotangent):
        raise RuntimeError("stand-in peer: no VJP at this size")

    product.defvjp(product_fwd, product_bwd)

    class BinaryArray:
        def __init__(self, value):
            self.value = value

    class CSR:
        def __init__(self, arrays, shape):
            self.data, self.indices, self.indptr = arrays
            self.shape = shape
            module.built.append(arrays)

        def __rmatmul__(self, events):
            time.sleep(module.trace_s)
            spikes = (events.value if isinstance(events, BinaryArray) else events).astype(suite.DTYPE)
            data = jnp.broadcast_to(self.data, self.indices.shape)
            rows = row_ids(self.indptr, self.indices.shape[0])
            if module.failing_vjp:
                return product(data, self.indices, rows, spikes, self.shape[1])
            return jax.ops.segment_sum(data * spikes[rows], self.indices, num_segments=self.shape[1])

    module.CSR, module.BinaryArray = CSR, BinaryArray
    monkeypatch.setitem(sys.modules, "brainevent", module)
    monkeypatch.setattr(suite, "unavailable", lambda name: None if name == "brainevent" else "left out")
    monkeypatch.setattr(suite, "STEPS", 4)
    return module


def test_brainevent_gets_the_indices_as_jit_arguments(fake_brainevent):
    """Review: brainevent's method closed over W.indices, an [nnz] constant compiled into every program."""
    W = suite.build(300, 10, "heterogeneous", jax.random.key(0))
    spikes, _ = suite.spike_vectors(jax.random.key(1), 300, 0.05)
    method = suite.brainevent_method(W)
    value = jax.jit(method.forward)(method.weights, method.structure, spikes[0])
    data, indices, _ = fake_brainevent.built[-1]
    assert isinstance(indices, jax.core.Tracer) and isinstance(data, jax.core.Tracer)
    expected = suite.diffbrain_method(W, "reference")
    np.testing.assert_allclose(value, expected.forward(expected.weights, expected.structure, spikes[0]), 1e-6)


def _compile_seconds(frame, method, metric) -> float:
    (note,) = frame[(frame.method == method) & (frame.metric == metric)].note
    return float(re.match(r"compile (\S+) s", note).group(1))


def test_a_peers_compile_time_is_reported(fake_brainevent):
    """Review: brainevent's call was compiled in an untimed warm-up, so its record said "compile 0.00 s"."""
    fake_brainevent.trace_s = 0.2
    case = suite.Case(300, 10, 0.05, "heterogeneous")
    frame = to_frame(suite.run_case(case, suite.build(300, 10, case.weights, jax.random.key(0)), repeats=1))
    assert _compile_seconds(frame, "brainevent", "call_time") >= 0.2


def test_a_peer_failing_after_its_forward_leaves_the_case_its_numbers(fake_brainevent):
    """Review: a peer whose forward works but whose VJP fails lost the whole case, diffbrain's numbers too."""
    fake_brainevent.failing_vjp = True
    case = suite.Case(300, 10, 0.05, "heterogeneous")
    frame = to_frame(suite.run_case(case, suite.build(300, 10, case.weights, jax.random.key(0)), repeats=1))
    ok = frame[frame.status == "ok"]
    assert {"step_time", "call_time", "weight_grad_time"} <= set(ok[ok.method == "diffbrain"].metric)
    assert {"segment_sum", "bcoo", "lax.scan"} <= set(ok.method) and "brainevent" not in set(ok.method)
    (note,) = frame[(frame.method == "brainevent") & (frame.status == "skipped")].note
    assert "weight_grad_time" in note and "no VJP at this size" in note


@pytest.mark.skipif(importlib.util.find_spec("brainevent") is None, reason="brainevent is not installed")
def test_brainevent_agrees_with_diffbrain():
    W = suite.build(300, 10, "heterogeneous", jax.random.key(0))
    spikes, x = suite.spike_vectors(jax.random.key(1), 300, 0.05)
    cotangent = jax.random.normal(jax.random.key(2), (300,), suite.DTYPE)
    theirs = suite.jax_runs(suite.brainevent_method(W), spikes, x, cotangent)
    ours = suite.jax_runs(suite.diffbrain_method(W, "reference"), spikes, x, cotangent)
    for metric in suite.METRICS:
        np.testing.assert_allclose(theirs[metric](), ours[metric](), rtol=1e-5, atol=1e-5)


def test_step_times_are_per_scanned_step_when_the_scan_is_shorter_than_dense_steps(tiny_case, monkeypatch):
    """Review s24: with STEPS (4) below DENSE_STEPS (10), the dense-cost methods scanned 4 steps and their
    time was divided by 10. Each timed run here takes 1 s: every step_time is 1 s / 4 steps."""
    case, W = tiny_case
    assert suite.STEPS < suite.DENSE_STEPS
    one_second = suite.Timing(compile=0.0, median=1.0, min=1.0, max=1.0, iqr=0.0, runs=(1.0,))
    monkeypatch.setattr(suite, "measure_side_by_side", lambda fns, repeats: dict.fromkeys(fns, one_second))
    frame = to_frame(suite.run_case(case, W, repeats=1, quick=True))
    steps = frame[(frame.metric == "step_time") & (frame.status == "ok")]
    assert {"dense", "diffbrain"} <= set(steps.method)
    np.testing.assert_allclose(steps.value, 1.0 / 4)
