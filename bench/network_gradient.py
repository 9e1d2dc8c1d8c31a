"""Gradients of a network simulation w.r.t. its per-synapse weights: `lax.scan` against `ops.event_scan`.

``python -m diffbrain.bench.network_gradient [--scale 0.1] [--duration 100]`` builds the Potjans–Diesmann
microcircuit (`networks.Microcircuit`, from ``../shared/data/conn-potjans-diesmann2014`` or ``--data``) and
prints, side by side in one process (medians after a warm-up call), the wall time of a simulation with
surrogate spikes and of the gradient of a loss of its spike counts and potentials w.r.t. the whole network
(every projection's ``W.data``, one weight per synapse, included): `Network.simulate` through `lax.scan`,
through `ops.event_scan` (``event_scan=True``) and through it with ``checkpoint`` steps, with XLA's
temporary memory for each (its compiled buffers) and the largest difference of event_scan's gradients from
lax.scan's (relative to the largest gradient).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..zoo import networks

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conn-potjans-diesmann2014"
"""The microcircuit's data next to the repository (any copy can be given with ``--data``)."""


def gradient_runs(
    net: networks.Network, duration_ms: float, checkpoint: int
) -> dict[str, tuple[Callable[[], object], int]]:
    """Jitted zero-argument calls by name, with XLA's temporary bytes of each: the surrogate simulation's
    loss (``forward``) and its gradient through `lax.scan`, `ops.event_scan`, and `ops.event_scan` with
    ``checkpoint``."""
    params, static = eqx.partition(net, eqx.is_array)
    key = jax.random.key(1)

    def loss(net, **options):
        result = net.simulate(duration_ms, key, surrogate=True, check_finite=False, **options)
        weights = jnp.arange(1, result.counts.shape[1] + 1, dtype=result.counts.dtype)
        return jnp.sum(result.counts * weights) + jnp.mean(result.final_state.neurons.V)

    def jitted(function: Callable) -> Callable:  # the arrays (indices too) as arguments, not constants
        return jax.jit(lambda params: function(eqx.combine(params, static)))

    calls = {
        "forward": jitted(loss),
        "grad, lax.scan": jitted(eqx.filter_grad(loss)),
        "grad, event_scan": jitted(eqx.filter_grad(lambda net: loss(net, event_scan=True))),
        f"grad, event_scan, checkpoint={checkpoint}": jitted(
            eqx.filter_grad(lambda net: loss(net, event_scan=True, checkpoint=checkpoint))
        ),
    }
    runs = {}
    for name, call in calls.items():
        compiled = call.lower(params).compile()
        runs[name] = (
            (lambda compiled=compiled: compiled(params)),
            compiled.memory_analysis().temp_size_in_bytes,
        )
    return runs


def median_times(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict]:
    """Median wall time (s) of each call over ``repeats`` turns (one call of each per turn, after one
    warm-up call of each), and each call's result."""
    results = {name: jax.block_until_ready(run()) for name, run in runs.items()}
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}, results


def largest_difference(gradient, reference) -> float:
    """The largest difference between two gradients (PyTrees), relative to the reference's largest value."""
    pairs = list(zip(jax.tree.leaves(gradient), jax.tree.leaves(reference), strict=True))
    scale = max(float(jnp.max(jnp.abs(r))) for _, r in pairs)
    return max(float(jnp.max(jnp.abs(g - r))) for g, r in pairs) / scale


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.network_gradient", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, default=DATA, help="the conn-potjans-diesmann2014 folder")
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of the full-scale neurons")
    parser.add_argument("--duration", type=float, default=100.0, help="simulated time per call, ms")
    parser.add_argument("--checkpoint", type=int, default=100, help="steps per checkpointed segment")
    parser.add_argument("--repeats", type=int, default=3, help="timed turns after the warm-up call")
    args = parser.parse_args(argv)
    net = networks.Microcircuit.from_data(args.data, scale=args.scale).build(jax.random.key(0))
    synapses = sum(projection.W.nnz for projection in net.projections.values())
    print(f"microcircuit: {net.n} neurons, {synapses:.3g} synapses, {args.duration:g} ms, surrogate spikes")
    runs = gradient_runs(net, args.duration, args.checkpoint)
    times, results = median_times({name: run for name, (run, _) in runs.items()}, args.repeats)
    forward = times["forward"]
    for name, seconds in times.items():
        memory = runs[name][1] / 2**20
        line = f"{name}: {seconds:.3f} s ({seconds / forward:.1f}× forward), XLA temporaries {memory:.0f} MiB"
        if name.startswith("grad, event_scan"):
            difference = largest_difference(results[name], results["grad, lax.scan"])
            line += f", largest difference from lax.scan's {difference:.1e}"
        print(line)


if __name__ == "__main__":
    main()
