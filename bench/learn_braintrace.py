"""Suite "learn" side by side with braintrace: one online gradient step of ES-D-RTRL, braintrace vs diffbrain.

The issue's target is diffbrain's ES-D-RTRL ≥ 10× faster per step than braintrace's on the same network.
diffbrain's side is the learn suite's own network and batch (`learn.network`, `learn.poisson_batch`: 200
ALIF neurons, 80 % E / 20 % I, conductance synapses, 100 Poisson inputs, 2 readouts, batch 16, dt 1 ms,
float32) and its gradient steps (`learn.gradient_step`: ``"es-d-rtrl"`` and ``"bptt"``), timed in turns
(`measure_side_by_side`) before and after braintrace runs, their runs pooled. braintrace 0.2.x runs in a
subprocess of another Python (``peer_python``, default ``$DIFFBRAIN_PEER_PYTHON`` else this interpreter)
through ``learn_peers.py``, on the same initial weights (exported element by element) and the same input
spikes, labels and loss mask; its network and how it differs from diffbrain's — threshold adaptation instead
of an adaptation current, ``|W|`` instead of ``softplus``, a bias-free rate readout — are in that script's
docstring. Its trace decay is diffbrain's ``timescales="single"`` one (`diffbrain.learn.online.default_decay`,
e^{−1/100}); diffbrain runs its default ES-D-RTRL (one trace per state timescale, more work than one decay).

Records per T (case ``n_rec=200/T=<T>/braintrace``):

* ``step_time`` (s) of ``diffbrain`` (its ES-D-RTRL, the method compared), ``diffbrain.bptt``,
  ``braintrace.es-d-rtrl`` (states with a batch axis, ``braintrace.compile(..., batch_size=16)``) and
  ``braintrace.es-d-rtrl.vmap`` (``vmap=True``: its ``ETraceVmap`` over unbatched learners; the same gradients
  to 1e-9): the median of the timed gradient steps, compilation excluded (braintrace: after two warm-up calls,
  since brainstate's ``jit`` compiles on the first two);
* ``compile_time`` (s) of each (braintrace: the two warm-up calls minus two timed steps);
* ``time_over_diffbrain`` (×) of each braintrace method: its step time over diffbrain's ES-D-RTRL's;
* ``firing_rate`` (Hz) of diffbrain's network (a forward run) and braintrace's (in a timed step): the same
  in the first ~20 steps (0.11 spikes per neuron and step at step 20, T = 100), then apart (the adaptation
  differs); both libraries' steps are dense, so their cost does not depend on the rate.

braintrace missing, failing or too slow: its records and the ratio are ``"skipped"`` with the reason.

Measured (2-core shared CPU, load average 3-5, jax 0.10.2 both sides, braintrace 0.2.6 / brainstate 0.5.4;
200 neurons, batch 16, 3 timed steps per method; s per gradient step):

====== ============== ============== =============== =================== =====================
T      diffbrain ES   diffbrain BPTT braintrace ES   braintrace ES vmap  braintrace / diffbrain
====== ============== ============== =============== =================== =====================
100    0.033          0.023          0.040           0.96                1.2× (vmap 29×)
300    0.099          0.075          0.118           2.90                1.2× (vmap 29×)
1,000  0.285          0.275          0.386           9.23                1.35× (vmap 32×)
====== ============== ============== =============== =================== =====================

(ES: ES-D-RTRL; the ratio is over diffbrain's ES-D-RTRL.)

So the issue's "≥ 10× faster than braintrace" holds only against braintrace's ``vmap=True`` learner; against
its batched learner, timed after the warm-up, diffbrain's ES-D-RTRL is 1.2-1.35× faster. The issue's
braintrace numbers (3.0 s at T = 100) match a *second* call, when brainstate's ``jit`` compiles again
(2.7-2.8 s here), or the vmap learner on a loaded machine — not a steady-state step.

Run: ``DIFFBRAIN_PEER_PYTHON=/path/to/python python -m diffbrain.bench.learn_braintrace [--steps 100 1000]
[--repeats N] [--python PYTHON] [--out FOLDER]`` (the records merged into ``FOLDER/learn.csv``, as by
``diffbrain bench learn``).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from diffbrain import learn as learn_lib
from diffbrain import zoo
from diffbrain.learn.online import default_decay

from . import learn
from .peers import peer_python as default_peer_python
from .peers import run_peer_script
from .records import Record, format_params, make_record, positive_int, skipped, to_frame
from .timing import measure_side_by_side

SUITE = learn.SUITE
PEERS = {"batched": "braintrace.es-d-rtrl", "vmap": "braintrace.es-d-rtrl.vmap"}
"""braintrace's method by its batching mode (see ``learn_peers.py``)."""
DIFFBRAIN = {"es-d-rtrl": "diffbrain", "bptt": "diffbrain.bptt"}
STEPS = (100, 300, 1_000)
REPEATS = 3
PEER_TIMEOUT_S = 1_800.0
PEER_SCRIPT = Path(__file__).with_name("learn_peers.py")


def export(net: learn_lib.EINetwork, batches: dict[int, learn_lib.SimpleBatch], path: Path) -> Path:
    """Write what ``learn_peers.py`` needs to rebuild ``net`` and feed it ``batches`` (by T) to an ``.npz``.

    The weights are the effective magnitudes (``|W_in|``, the masked dense ``|W_rec|``, rows presynaptic), so
    both libraries start from the same synapses; voltages in mV, times in ms.
    """
    if net.sparse:
        raise ValueError(
            "`export` needs a dense network (`net.sparse` is True); braintrace trains dense layers."
        )
    neuron = net.neuron
    if not isinstance(neuron, zoo.ALIF):
        raise ValueError(
            f"`export` needs an ALIF network, got {type(neuron).__name__}; braintrace runs ALIF."
        )
    w_in, w_rec = net.weights()

    def per_neuron(value) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, np.float32), (net.n_rec,))

    span = float(neuron.V_th - neuron.V_reset)
    arrays = dict(
        w_in=w_in,
        w_rec=w_rec,
        w_out=net.w_out,
        n_exc=net.n_exc,
        dt=net.dt,
        tau_syn=net.tau_syn,
        tau_out=net.tau_out,
        E_exc=net.E_exc,
        E_inh=net.E_inh,
        tau=per_neuron(neuron.tau),
        tau_a=per_neuron(neuron.tau_a),
        beta=per_neuron(neuron.beta),
        V_rest=float(neuron.V_rest),
        V_th=float(neuron.V_th),
        V_reset=float(neuron.V_reset),
        surrogate_gain=float(neuron.spike_fn.alpha) * span**2,  # per unit of (V − V_th)/(V_th − V_reset)
        surrogate_width=float(neuron.spike_fn.width),  # mV
    )
    for n_steps, batch in batches.items():
        arrays[f"inputs_{n_steps}"] = np.asarray(batch.inputs, np.uint8)
        arrays[f"labels_{n_steps}"] = np.asarray(batch.labels)
        arrays[f"mask_{n_steps}"] = np.asarray(batch.mask[:, 0])
    np.savez(path, **{name: np.asarray(value) for name, value in arrays.items()})
    return path


def measure_peer(
    network_file: Path,
    steps: Sequence[int],
    modes: Sequence[str],
    repeats: int,
    python: str,
    decay: float,
    timeout_s: float,
) -> dict | str:
    """Run ``learn_peers.py`` in ``python``; its output (``{"versions", "runs"}``) or why not."""
    spec = dict(network=str(network_file), steps=list(steps), modes=list(modes), repeats=repeats, decay=decay)
    return run_peer_script(python, PEER_SCRIPT, spec, "braintrace", timeout_s)


def _firing_rate(net: learn_lib.EINetwork, batch: learn_lib.SimpleBatch) -> float:
    """diffbrain's mean recurrent rate (Hz) on ``batch``."""

    def count(state, x):
        state, (spikes, _) = net.step(state, x)
        return state, spikes.mean()

    _, rates = jax.jit(lambda: jax.lax.scan(count, net.init_state(batch.inputs.shape[1]), batch.inputs))()
    return float(jnp.mean(rates)) / net.dt * 1000.0


def run(
    steps: Sequence[int] = STEPS,
    n_rec: int = learn.SIZES[0],
    repeats: int = REPEATS,
    batch_size: int = learn.BATCH,
    python: str | None = None,
    modes: Sequence[str] = tuple(PEERS),
    timeout_s: float = PEER_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> list[Record]:
    """braintrace's and diffbrain's ES-D-RTRL (and diffbrain's BPTT) per T, side by side (see the module)."""
    net = learn.network(n_rec)
    batches = {T: learn.poisson_batch(jax.random.key(1), T, batch_size) for T in steps}
    compiled, compile_time = {}, {}
    for T in steps:
        for method in DIFFBRAIN:
            start = time.perf_counter()
            compiled[T, method] = jax.jit(learn.gradient_step(method)).lower(net, batches[T]).compile()
            compile_time[T, method] = time.perf_counter() - start

    def time_diffbrain(T: int) -> dict:
        fns = {m: (lambda c=compiled[T, m], b=batches[T]: c(net, b)) for m in DIFFBRAIN}
        return measure_side_by_side(fns, repeats=repeats, warmup=1)

    before = {T: time_diffbrain(T) for T in steps}
    with tempfile.TemporaryDirectory(prefix="diffbrain-learn-") as workdir:
        network_file = export(net, batches, Path(workdir) / "network.npz")
        decay = default_decay(net)
        found = measure_peer(
            network_file, steps, modes, repeats, python or default_peer_python(), decay, timeout_s
        )
    after = {T: time_diffbrain(T) for T in steps}

    records = []
    for T in steps:
        common = {
            "params": format_params(
                {
                    "n_rec": n_rec,
                    "T": T,
                    "batch": batch_size,
                    "n_in": learn.N_IN,
                    "dt_ms": net.dt,
                    "decay": decay,
                }
            ),
            "dtype": "float32",
        }
        case = f"n_rec={n_rec}/T={T}/braintrace"
        times = {}
        for method, name in DIFFBRAIN.items():
            runs = np.asarray(before[T][method].runs + after[T][method].runs)
            q1, median, q3 = np.percentile(runs, [25, 50, 75])
            times[name] = median
            fields = dict(repeats=runs.size, min=runs.min(), max=runs.max(), iqr=q3 - q1, **common)
            note = "timed before and after braintrace, runs pooled"
            records.append(make_record(SUITE, case, name, "step_time", median, "s", note=note, **fields))
            records.append(
                make_record(SUITE, case, name, "compile_time", compile_time[T, method], "s", **common)
            )
        rate = _firing_rate(net, batches[T])
        records.append(make_record(SUITE, case, DIFFBRAIN["es-d-rtrl"], "firing_rate", rate, "Hz", **common))
        for mode in modes:
            method = PEERS[mode]
            if isinstance(found, str):
                records += [
                    skipped(SUITE, case, method, "step_time", "s", found, **common),
                    skipped(SUITE, case, method, "time_over_diffbrain", "x", found, **common),
                ]
                continue
            peer = next(r for r in found["runs"] if r["T"] == T and r["mode"] == mode)
            runs = np.asarray(peer["run_s"])
            q1, median, q3 = np.percentile(runs, [25, 50, 75])
            fields = dict(repeats=runs.size, min=runs.min(), max=runs.max(), iqr=q3 - q1, **common)
            ratio = median / times[DIFFBRAIN["es-d-rtrl"]]
            note = "braintrace's step time over diffbrain's ES-D-RTRL's"
            peer_records = [
                make_record(SUITE, case, method, "step_time", median, "s", **fields),
                make_record(SUITE, case, method, "compile_time", peer["compile_s"], "s", **common),
                make_record(SUITE, case, method, "firing_rate", peer["rate_hz"], "Hz", **common),
                make_record(SUITE, case, method, "time_over_diffbrain", ratio, "x", note=note, **common),
            ]
            peer_versions = ";".join(f"{name}={version}" for name, version in found["versions"].items())
            records += [
                dataclasses.replace(r, versions=f"{r.versions};{peer_versions}") for r in peer_records
            ]
        if progress is not None:
            progress(
                ", ".join(f"{r.method} {r.metric} {r.value:.4g} {r.unit}" for r in records if case == r.case)
            )
    return records


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m diffbrain.bench.learn_braintrace", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--steps", type=positive_int, nargs="+", default=list(STEPS), help="sequence lengths T"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=REPEATS, help="timed gradient steps per method (median)"
    )
    parser.add_argument("--python", help="the interpreter with braintrace (default $DIFFBRAIN_PEER_PYTHON)")
    parser.add_argument(
        "--out", help=f"a results folder: merge the records into OUT/{SUITE}.csv (checked before the run)"
    )
    args = parser.parse_args(argv)
    results = learn.results_file(parser, args.out)
    records = run(
        args.steps, repeats=args.repeats, python=args.python, progress=lambda s: print(s, flush=True)
    )
    if results is not None:
        results.add(records)
        print(f"{len(records)} records merged into {results.path}")
    frame = to_frame(records)
    table = frame.assign(column=frame.metric + " " + frame.method)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(table.pivot_table(index="case", columns="column", values="value", sort=False).to_string())


if __name__ == "__main__":
    main()
