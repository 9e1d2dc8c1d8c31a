"""Wall time of the sharded network simulations against the one-device ones, side by side in one process.

``python -m diffbrain.bench.sharded [--scale 0.1] [--duration 1000]`` builds the Potjans–Diesmann microcircuit
(`networks.Microcircuit`, from ``--data``, else the ``conn-potjans-diesmann2014`` folder of
``$DIFFBRAIN_DATA`` or ``../shared/data``: `sim.microcircuit_folder`) and prints the
median wall time of `Network.simulate` and of `networks.simulate_network_sharded` on 1 and on all devices,
with the rates of each (they agree: it is the same simulation). On a CPU, give it devices first::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m diffbrain.bench.sharded

Fake CPU devices share the host's cores, so there the sharded run gains nothing; the script is meant for
several GPUs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from ..zoo import networks
from .records import positive_int
from .sim import MICROCIRCUIT_DATA, microcircuit_folder


def median_time(run: Callable[[], networks.NetworkResult], repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time of ``run`` (s) over ``repeats`` calls after one warm-up call, and its rates (Hz)."""
    result = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        jax.block_until_ready(result.counts)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), np.asarray(result.rates())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.sharded", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--data", type=Path, help=f"the {MICROCIRCUIT_DATA} folder (default: {microcircuit_folder()})"
    )
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of the full-scale neurons")
    parser.add_argument("--duration", type=float, default=1000.0, help="simulated time per call, ms")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed calls after the warm-up call")
    args = parser.parse_args(argv)
    folder = microcircuit_folder(args.data)
    net = networks.Microcircuit.from_data(folder, scale=args.scale).build(jax.random.key(0))
    synapses = sum(projection.W.nnz for projection in net.projections.values())
    devices = jax.devices()
    print(f"microcircuit: {net.n} neurons, {synapses:.3g} synapses, {args.duration:g} ms per call, {devices}")
    key = jax.random.key(1)
    runs = {
        "Network.simulate": lambda: net.simulate(args.duration, key),
        "simulate_network_sharded, 1 device": lambda: networks.simulate_network_sharded(
            net, args.duration, key, devices=devices[:1]
        ),
        f"simulate_network_sharded, {len(devices)} devices": lambda: networks.simulate_network_sharded(
            net, args.duration, key, devices=devices
        ),
    }
    for label, run in runs.items():
        seconds, rates = median_time(run, args.repeats)
        print(f"{label}: {seconds:.3f} s (median of {args.repeats}); rates {np.round(rates, 2)} Hz")


if __name__ == "__main__":
    main()
