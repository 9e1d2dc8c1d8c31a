"""pytest-benchmark entry point of the ops suite (see `diffbrain.bench` for the command).

Each test times 100 steps of `diffbrain.ops.event_matvec` inside a jitted `lax.scan` for one (n, firing,
weights) case with the ``benchmark`` fixture, then runs the case side by side with its peers
(`ops.run_case`) and puts the per-step times and diffbrain's ratios into ``benchmark.extra_info``.
"""

from __future__ import annotations

import math

import jax
import pytest

from diffbrain.bench import ops

ROUNDS = 5


@pytest.mark.parametrize("weights", ops.WEIGHTS)
@pytest.mark.parametrize("firing", ops.FIRING)
@pytest.mark.parametrize(("n", "per_row"), ops.SIZES)
def test_ops(benchmark, n: int, per_row: int, firing: float, weights: str):
    case = ops.Case(n, per_row, firing, weights)
    W = ops.build(n, per_row, weights, jax.random.key(0))
    spikes, x = ops.spike_vectors(jax.random.key(n), n, firing)
    cotangent = jax.numpy.zeros(n, ops.DTYPE)
    scan = ops.jax_runs(ops.diffbrain_method(W, None), spikes, x, cotangent)["step_time"]
    jax.block_until_ready(scan())  # compile outside the timed rounds

    benchmark.pedantic(lambda: jax.block_until_ready(scan()), rounds=ROUNDS, warmup_rounds=1)

    if benchmark.disabled:
        return
    benchmark.extra_info["step_time_s"] = benchmark.stats.stats.median / ops.STEPS
    for record in ops.run_case(case, W, repeats=3, quick=True):
        if record.status == "ok" and (record.metric == "step_time" or record.method == "diffbrain"):
            benchmark.extra_info[f"{record.metric} {record.method}"] = record.value
    assert math.isfinite(benchmark.extra_info["step_time_s"])
