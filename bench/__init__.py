"""Benchmarks of diffbrain, side by side with peer libraries, written as CSV records for the leaderboard.

A benchmark suite is a function returning `records.Record`s (suite, case, method, metric, value, unit,
repeats, spread, dtype, CPU model, JAX backend, library versions, git commit, date). `timing` measures
compile and run time apart, as medians over repeats after warm-up. Peers that are not installed give
records with ``status="skipped"``, never made-up numbers.

Suites:

* `throughput`: neuron updates per second of LIF, GIF and HH populations (N = 10³…10⁵, 1,000 steps),
  diffbrain vs brainpy.state.
* `ops`: the event-driven synaptic product ``sᵀW`` (n = 4,000…100,000, firing 0.5–10%), forward inside
  `lax.scan` and as single calls, weight gradient and spike VJP, vs dense, BCOO, segment_sum, a numba
  loop and brainevent (``python -m diffbrain.bench ops [--quick] [--full]``).
* `network_gradient`: the gradient of the Potjans–Diesmann microcircuit's surrogate spikes w.r.t. every
  parameter, per-synapse weights included, through `lax.scan` and through `diffbrain.ops.event_scan`
  (``Network.simulate(event_scan=True)``, with and without ``checkpoint``).

Outside the leaderboard, ``python -m diffbrain.bench.sharded`` times the sharded network simulation against
the one-device one (`sharded`).

Run a suite and merge its records into ``DIR/throughput.csv``::

    python -m diffbrain.bench throughput [--quick] [--out DIR]

or through pytest-benchmark (the project's pytest config disables benchmarks, hence ``--benchmark-enable``)::

    pytest bench --benchmark-enable --benchmark-only

Read results back with ``records.read_results(DIR)`` (a pandas DataFrame). brainpy pins its own JAX, so
install it in an environment of its own to get the side-by-side numbers::

    python3 -m venv venv-peers && venv-peers/bin/pip install -e . brainpy
    venv-peers/bin/python -m diffbrain.bench throughput --out bench-results
"""
