"""Where diffbrain's automatic ops backend falls back to ``reference`` (the compiled cpu kernel cannot be
built), the suites skip the records they would time on it, with the reason: under the kernel's method
names the fallback's ~25x slower times replaced the kernel's when merged into a results folder."""

import json
import os
import subprocess
import sys

import jax
import pytest

from diffbrain.bench import learn, network_gradient, records, sim
from diffbrain.bench import ops as ops_bench
from diffbrain.ops.kernels import cpu

REASON = "the automatic ops backend is 'reference' (a test's stand-in reason)"

WITHOUT_A_COMPILER = """
import json, warnings
import jax
from diffbrain import ops
from diffbrain.bench import ops as ops_bench
warnings.simplefilter("ignore", RuntimeWarning)  # the ops package's own fallback warning
W = ops.CSR.fixed_prob(jax.random.key(0), 200, 200, 0.05, weight=0.5)
found = ops_bench.run_case(ops_bench.Case(200, 10, 0.05, "homogeneous"), W, repeats=1, quick=True)
print(json.dumps({"fallback": ops_bench.automatic_fallback(),
                  "records": [[r.method, r.metric, r.status, r.note] for r in found]}))
"""


def test_ops_suite_without_a_compiler_skips_the_automatic_rows_naming_the_fix(tmp_path):
    """A fresh process with no C++ compiler (and an empty kernel cache, so no kernel built before)."""
    environment = os.environ | {
        "DIFFBRAIN_CXX": "/nonexistent-compiler",
        "DIFFBRAIN_CACHE": str(tmp_path),
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_A_COMPILER],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/nonexistent-compiler" in out["fallback"] and "DIFFBRAIN_CXX" in out["fallback"]
    found = out["records"]
    measured = {method for method, _, status, _ in found if status == "ok"}
    # at HEAD: "diffbrain" measured (the reference backend's 371 µs under the kernel's name), no reason
    assert "diffbrain" not in measured and "lax.scan" not in measured
    assert "diffbrain.reference" in measured  # the fallback's numbers, under its own name
    skips = {method: note for method, _, status, note in found if status == "skipped"}
    assert skips["diffbrain"] == skips["lax.scan"] == out["fallback"]


def test_with_the_compiled_kernel_nothing_is_a_fallback():
    if not cpu.available():
        pytest.skip("the cpu kernel cannot be built here")
    assert ops_bench.automatic_fallback() is None
    W = ops_bench.build(4_000, 80, "homogeneous", jax.random.key(0))
    methods, skips = ops_bench.jax_methods(W, quick=True)
    assert "diffbrain" in methods and "diffbrain" not in skips


def test_network_gradient_skips_every_method(monkeypatch, tmp_path):
    monkeypatch.setattr(network_gradient, "automatic_fallback", lambda: REASON)
    found = network_gradient.run_case(0.01, 1.0, 3.0, repeats=1, data=tmp_path)
    assert {r.method for r in found} == {"lax.scan", "diffbrain", "diffbrain.checkpoint"}
    assert {(r.status, r.note) for r in found} == {("skipped", REASON)}


def test_learn_skips_the_csr_layout_and_keeps_the_dense_one(monkeypatch):
    monkeypatch.setattr(learn, "automatic_fallback", lambda: REASON)
    found = learn.sparse_network_records(60, 0.1, 10, 2, repeats=1)
    csr = [r for r in found if r.case.endswith("/csr")]
    assert {r.method for r in csr} == set(learn.SPARSE_METHODS)
    assert {(r.status, r.note) for r in csr} == {("skipped", REASON)}
    dense = [r for r in found if r.case.endswith("/dense")]
    assert {r.status for r in dense} == {"ok"} and {r.metric for r in dense} == {"temp_memory", "step_time"}


def test_sim_skips_diffbrains_records_and_its_summary_still_shows_the_peers(monkeypatch):
    monkeypatch.setattr(sim, "automatic_fallback", lambda: REASON)
    found = sim.run_size(200, (10.0,), peers=(), repeats=1)
    assert {r.method for r in found} == {"diffbrain"}
    assert {(r.status, r.note) for r in found} == {("skipped", REASON)}
    assert {r.metric for r in found} >= {"wall_time_per_bio_s", "compile_time", "firing_rate_e"}
    peer = sim.records_of(sim.Measurement("nest", 200, 10.0, (0.5,), 0.0, (16.0, 16.5)))
    table = sim.summary(records.to_frame(found + peer))
    assert table.loc[("n=200/T=0.01s", "nest"), "wall s/bio-s"] == pytest.approx(50.0)  # no KeyError


def test_a_tpu_running_reference_is_no_fallback(monkeypatch):
    """A TPU has no kernel of its own: ``reference`` is its backend by design, and its records are timed."""
    monkeypatch.setattr(ops_bench.jax, "default_backend", lambda: "tpu")
    monkeypatch.setattr(ops_bench, "automatic_backend", lambda: "reference")
    assert ops_bench.automatic_fallback() is None
