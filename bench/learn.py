"""Suite "learn": memory and time of one gradient step of BPTT and the online algorithms, and their agreement.

The network is `diffbrain.learn.EINetwork` (ALIF, 80 % E / 20 % I, conductance synapses, leaky 2-unit
readout) with 100 Poisson inputs, batch 16, float32, dt 1 ms, the loss on the last 10 % of the steps.
Grid: T = 100, 300, 1,000 steps at 200 neurons (``full``: also T = 3,000 and 10,000, and 800 neurons).
Methods: ``bptt``, ``d-rtrl``, ``es-d-rtrl`` (`diffbrain.learn.bptt` / `diffbrain.learn.online`).

Metrics per method and case:

* ``temp_memory`` (MiB): XLA's compiled temporary memory of the jitted gradient step
  (``compile().memory_analysis().temp_size_in_bytes``) — deterministic, the number that grows with T
  for BPTT and must not for the online algorithms;
* ``step_time`` (s): one gradient step (median of the timed runs), and ``compile_time`` (s);
* ``time_over_bptt`` (×): an online method's step time over BPTT's on the same case;
* ``cosine_<group>`` (1): the cosine between the online and the BPTT gradient for the input, E→all,
  I→all and readout weights, at T = 100 (case ``.../cosine``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import pandas as pd

from diffbrain import learn

from .records import Record, format_params, make_record
from .timing import measure

SUITE = "learn"
METHODS = ("bptt", "d-rtrl", "es-d-rtrl")
STEPS = (100, 300, 1_000)
FULL_STEPS = (*STEPS, 3_000, 10_000)
SIZES = (200,)
FULL_SIZES = (200, 800)
BATCH, N_IN, N_OUT = 16, 100, 2
COSINE_STEPS = 100
REPEATS = 3
QUICK = {"repeats": 1}
DTYPE = jnp.float32
MIB = 2**20


def gradient_step(method: str) -> Callable:
    """``(net, batch) -> (loss, grads)`` of a method of `METHODS`."""
    if method == "bptt":
        return learn.bptt
    return lambda net, batch: learn.online(net, batch, algorithm=method)


def poisson_batch(key, n_steps: int, batch_size: int = BATCH, n_in: int = N_IN) -> learn.SimpleBatch:
    """A two-class batch: the label picks which half of the inputs fires at 40 Hz (the other at 10 Hz)."""
    k_label, k_spikes = jax.random.split(key)
    labels = jax.random.bernoulli(k_label, 0.5, (batch_size,)).astype(jnp.int32)
    first_half = jnp.arange(n_in) < n_in // 2
    rates = jnp.where(first_half[None] == (labels[:, None] == 0), 0.04, 0.01)
    inputs = (jax.random.uniform(k_spikes, (n_steps, batch_size, n_in)) < rates).astype(DTYPE)
    mask = jnp.broadcast_to((jnp.arange(n_steps) >= n_steps - n_steps // 10)[:, None], (n_steps, batch_size))
    return learn.SimpleBatch(inputs, jnp.broadcast_to(labels, mask.shape), mask, labels)


def network(n_rec: int) -> learn.EINetwork:
    """The benchmark network in float32."""
    net = learn.EINetwork(N_IN, n_rec, N_OUT, key=jax.random.key(0))
    return jax.tree.map(lambda x: x.astype(DTYPE) if eqx.is_inexact_array(x) else x, net)


def run_case(n_rec: int, n_steps: int, repeats: int) -> list[Record]:
    """Memory and time of every method on one (n_rec, T) case."""
    net, batch = network(n_rec), poisson_batch(jax.random.key(1), n_steps)
    params = format_params({"n_rec": n_rec, "T": n_steps, "batch": BATCH, "n_in": N_IN, "dt_ms": net.dt})
    case = f"n_rec={n_rec}/T={n_steps}"
    records, step_time = [], {}
    for method in METHODS:
        start = time.perf_counter()
        compiled = jax.jit(gradient_step(method)).lower(net, batch).compile()
        compile_time = time.perf_counter() - start
        memory = compiled.memory_analysis().temp_size_in_bytes / MIB
        timing = measure(lambda compiled=compiled: compiled(net, batch), repeats=repeats, warmup=1)
        step_time[method] = timing.median
        common = {"params": params, "dtype": "float32"}
        records += [
            make_record(SUITE, case, method, "temp_memory", memory, "MiB", **common),
            make_record(SUITE, case, method, "compile_time", compile_time, "s", **common),
            make_record(
                SUITE, case, method, "step_time", timing.median, "s", repeats=timing.repeats,
                min=timing.min, max=timing.max, iqr=timing.iqr, **common,
            ),
        ]  # fmt: skip
        if method != "bptt":
            ratio = timing.median / step_time["bptt"]
            records.append(make_record(SUITE, case, method, "time_over_bptt", ratio, "x", **common))
    return records


def cosine_records(n_rec: int, n_steps: int = COSINE_STEPS) -> list[Record]:
    """Per weight group, the cosine between each online gradient and the BPTT gradient."""
    net, batch = network(n_rec), poisson_batch(jax.random.key(2), n_steps)
    _, exact = jax.jit(learn.bptt)(net, batch)
    exc = net.is_excitatory
    groups = {
        "input": lambda g: g.w_in,
        "e_to_all": lambda g: g.w_rec[exc],
        "i_to_all": lambda g: g.w_rec[~exc],
        "readout": lambda g: g.w_out,
    }
    params = format_params({"n_rec": n_rec, "T": n_steps, "batch": BATCH})
    records = []
    for method in METHODS[1:]:
        _, approximation = jax.jit(gradient_step(method))(net, batch)
        for group, select in groups.items():
            a, b = select(exact).ravel(), select(approximation).ravel()
            cosine = float(jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
            case = f"n_rec={n_rec}/cosine"
            records.append(make_record(SUITE, case, method, f"cosine_{group}", cosine, "1", params=params))
    return records


def run(sizes: Sequence[int] = SIZES, steps: Sequence[int] = STEPS, repeats: int = REPEATS) -> list[Record]:
    """The whole grid: every (size, T) case, then the cosines per size."""
    records = []
    for n_rec in sizes:
        for n_steps in steps:
            records += run_case(n_rec, n_steps, repeats)
        records += cosine_records(n_rec)
    return records


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case, one column per metric and method."""
    table = frame.assign(column=frame.metric + " " + frame.method)
    return table.pivot_table(index="case", columns="column", values="value", aggfunc="last", sort=False)
