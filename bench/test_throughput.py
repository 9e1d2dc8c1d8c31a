"""pytest-benchmark entry point of the throughput suite (see `diffbrain.bench` for the command).

Each test times `zoo.simulate` of one (model, N) case with the ``benchmark`` fixture, then runs the case
side by side with brainpy.state (`throughput.run_case`) and puts neuron updates per second and the
speedups over brainpy.state into ``benchmark.extra_info``.
"""

from __future__ import annotations

import math

import jax
import pytest

from diffbrain import zoo
from diffbrain.bench import throughput
from diffbrain.zoo.registry import NEURONS

ROUNDS = 5


@pytest.mark.parametrize("n", throughput.SIZES)
@pytest.mark.parametrize("name", throughput.MODELS)
def test_throughput(benchmark, name: str, n: int):
    if name not in NEURONS:
        pytest.skip(f"model {name!r} is not in the registry")
    entry = NEURONS[name]
    steps, dt = throughput.STEPS, throughput.DT_MS[name]
    run = throughput.simulate_run(zoo.astype(entry.make(), throughput.DTYPE), entry.current, n, steps, dt)
    jax.block_until_ready(run())  # compile outside the timed rounds

    benchmark.pedantic(lambda: jax.block_until_ready(run()), rounds=ROUNDS, warmup_rounds=1)

    if benchmark.disabled:
        return
    benchmark.extra_info["updates_per_s"] = n * steps / benchmark.stats.stats.median
    for record in throughput.run_case(name, n, steps, repeats=3):
        if record.metric in ("throughput", "speedup_vs_brainpy") and record.status == "ok":
            benchmark.extra_info[f"{record.metric} {record.method}"] = record.value
    assert math.isfinite(benchmark.extra_info["updates_per_s"])
