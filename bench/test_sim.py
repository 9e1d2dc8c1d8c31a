"""pytest-benchmark entry point of the sim suite (see `diffbrain.bench` for the command).

Each test times diffbrain's COBA network (`networks.simulate`) for one (N, biological time) case with the
``benchmark`` fixture, then runs the case side by side with the peer simulators (`sim.run_size`; peers in
``$DIFFBRAIN_PEER_PYTHON``, skipped when absent) and puts each simulator's wall time per biological second,
compile time and firing rates into ``benchmark.extra_info``. ``test_microcircuit`` does the same for the
Potjans–Diesmann microcircuit (`sim.MICROCIRCUIT`) against NEST (`sim.run_microcircuit`: the rates are the
means over the init/background seeds `sim.SEEDS`, compared by `sim.compare_rates`; the data where
`sim.microcircuit_folder` finds it, skipped when absent).
"""

from __future__ import annotations

import math

import jax
import pytest

from diffbrain.bench import sim
from diffbrain.zoo import networks

ROUNDS = 3
CASES = [(sim.N, duration) for duration in sim.DURATIONS_MS] + list(sim.SCALING.items())


@pytest.mark.parametrize(("n", "duration_ms"), CASES)
def test_sim(benchmark, n: int, duration_ms: float):
    net = sim.network(n, jax.random.key(0))
    key = jax.random.key(1)

    def run():
        return jax.block_until_ready(networks.simulate(net, duration_ms, key, dt=sim.DT_MS).counts)

    run()  # compile outside the timed rounds
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0)

    if benchmark.disabled:
        return
    benchmark.extra_info["wall_time_per_bio_s"] = benchmark.stats.stats.median / (duration_ms / 1000.0)
    peers = sim.PEERS if n == sim.N else sim.SCALING_PEERS
    for record in sim.run_size(n, (duration_ms,), peers, repeats=2):
        if record.status == "ok":
            benchmark.extra_info[f"{record.metric} {record.method}"] = record.value
    assert math.isfinite(benchmark.extra_info["wall_time_per_bio_s"])


@pytest.mark.parametrize(("scale", "k_scale", "duration_ms"), sim.MICROCIRCUIT)
def test_microcircuit(benchmark, scale: float, k_scale: float, duration_ms: float):
    data = sim.microcircuit_folder()
    if not data.is_dir():
        pytest.skip(f"{data} not found: set $DIFFBRAIN_DATA to the folder that holds {sim.MICROCIRCUIT_DATA}")
    net = networks.Microcircuit.from_data(data, scale=scale, k_scale=k_scale).build(
        jax.random.key(0), sim.DT_MS
    )
    key = jax.random.key(1)

    def run():
        return jax.block_until_ready(net.simulate(duration_ms, key).counts)

    run()  # compile outside the timed rounds
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0)

    if benchmark.disabled:
        return
    benchmark.extra_info["wall_time_per_bio_s"] = benchmark.stats.stats.median / (duration_ms / 1000.0)
    found = sim.run_microcircuit(scale, k_scale, duration_ms, sim.MICROCIRCUIT_PEERS, repeats=2, data=data)
    for record in found:
        if record.status == "ok":
            benchmark.extra_info[f"{record.metric} {record.method}"] = record.value
    assert math.isfinite(benchmark.extra_info["wall_time_per_bio_s"])
