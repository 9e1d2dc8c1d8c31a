"""pytest-benchmark entry point of the learn suite (see `diffbrain.bench` for the command).

Each test times one gradient step of a method on the 200-neuron network with the ``benchmark`` fixture
and puts its compiled temporary memory (MiB) into ``benchmark.extra_info``.
"""

from __future__ import annotations

import jax
import pytest

from diffbrain.bench import learn

ROUNDS = 3


@pytest.mark.parametrize("n_steps", learn.STEPS)
@pytest.mark.parametrize("method", learn.METHODS)
def test_learn(benchmark, method: str, n_steps: int):
    net, batch = learn.network(learn.SIZES[0]), learn.poisson_batch(jax.random.key(1), n_steps)
    compiled = jax.jit(learn.gradient_step(method)).lower(net, batch).compile()
    jax.block_until_ready(compiled(net, batch))

    benchmark.pedantic(lambda: jax.block_until_ready(compiled(net, batch)), rounds=ROUNDS, warmup_rounds=0)

    benchmark.extra_info["temp_memory_mib"] = compiled.memory_analysis().temp_size_in_bytes / learn.MIB
    assert benchmark.extra_info["temp_memory_mib"] > 0


def test_cases_too_large_to_time_get_their_memory_and_a_skipped_time(monkeypatch):
    monkeypatch.setattr(learn, "TIME_WORK", 20 * 4 * 20 * learn.DRTRL_COST - 1)  # all but D-RTRL timed
    records = learn.run_case(20, 20, repeats=1, batch_size=4)
    by_metric = {(r.method, r.metric): r for r in records}
    for method in learn.METHODS:
        assert by_metric[method, "temp_memory"].value > 0
    assert (
        by_metric["d-rtrl", "step_time"].status == "skipped"
        and "not timed" in by_metric["d-rtrl", "step_time"].note
    )
    assert by_metric["bptt", "step_time"].status == "ok" and by_metric["bptt", "step_time"].value > 0
    assert by_metric["es-d-rtrl", "time_over_bptt"].value > 0
