"""Diagnostic: the cost of a batched value-and-gradient in every gradient mode, per fitting problem.

For each problem of the ``fit`` suite (`diffbrain.bench.fit.PROBLEMS`) this times, jitted and after
warm-up, the median of ``--repeats`` calls run in turns (`measure_side_by_side`):

* a `vmap`-ped forward loss over 8 and over 16 parameter vectors (what CMA-ES or DE pay per population);
* a `vmap`-ped value-and-gradient over 8 starts (what batched L-BFGS pays per iteration) in every mode of
  `diffbrain.fit.objective.MODES`, and in ``forward-folded`` (`folded_value_and_grad`, a variant of
  forward mode measured here and not adopted: it was never the fastest),

and prints, per mode, the milliseconds of one batched call and the cost per lane over the batched forward's
cost per lane (8 vectors): ``(t_grad / 8) / (t_forward8 / 8)``. The last column marks the mode
``gradient="auto"`` picks for 8 starts (``auto``) and the fastest gradient computation (``fastest``, the
one ``gradient="measure"`` should pick). Not a suite: nothing is recorded.

Run: ``python -m diffbrain.bench.gradient_modes [--problems hh-noise ...] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Scalar

jax.config.update("jax_enable_x64", True)

from diffbrain.bench import fit as bf  # noqa: E402
from diffbrain.fit.objective import MODES, Objective, auto_gradient_mode  # noqa: E402

from .records import positive_int  # noqa: E402
from .timing import measure_side_by_side  # noqa: E402

N_STARTS = 8
"""Starts of batched L-BFGS (`diffbrain.bench.fit.N_STARTS`)."""


def folded_value_and_grad(objective: Objective, u: Float[Array, " d"]) -> tuple[Scalar, Float[Array, " d"]]:
    """Forward mode with the d tangent directions folded into the batch: a `vmap` of `jax.jvp` over d
    copies of ``u`` and the unit vectors, so that (under a `vmap` over starts) the scan carries one
    uniform batch of n·d primal-and-tangent lanes instead of n primals beside n·d tangents (`jax.jacfwd`,
    mode ``"forward"``). Each lane recomputes the primal."""
    d = u.shape[0]
    values, grad = jax.vmap(lambda v, t: jax.jvp(objective._loss, (v,), (t,)))(
        jnp.broadcast_to(u, (d, d)), jnp.eye(d, dtype=u.dtype)
    )
    return values[0], grad


def batched_calls(objective: Objective, n_starts: int = N_STARTS) -> dict[str, Callable[[], object]]:
    """Zero-argument jitted calls: forward over n and 2n vectors, value-and-gradient over n in every mode."""
    free = objective.free
    us = free.sample(jax.random.key(0), 2 * n_starts)
    forward = jax.jit(jax.vmap(objective._loss))
    calls = {
        f"forward x{n_starts}": lambda: forward(us[:n_starts]),
        f"forward x{2 * n_starts}": lambda: forward(us),
    }
    for mode in MODES:
        if mode == "adjoint" and not objective.adjoint_supported:
            continue
        fn = jax.jit(jax.vmap(functools.partial(objective._value_and_grad, mode=mode)))
        calls[mode] = lambda fn=fn: fn(us[:n_starts])
    folded = jax.jit(jax.vmap(functools.partial(folded_value_and_grad, objective)))
    calls["forward-folded"] = lambda: folded(us[:n_starts])
    return calls


def table(names: tuple[str, ...], repeats: int) -> list[str]:
    """One row per (problem, computation): ms per batched call and the cost per lane over the forward's."""
    lines = [f"| problem | computation | ms per call | per lane / forward x{N_STARTS} per lane | pick |"]
    lines.append("|---|---|---|---|---|")
    for name in names:
        try:
            problem = bf.build(name)
        except FileNotFoundError as error:  # traubhh-paper without the shared data folder
            lines.append(f"| {name} | skipped: {error} | | | |")
            continue
        objective = problem.objective
        timings = measure_side_by_side(batched_calls(objective), repeats=repeats)
        base = timings[f"forward x{N_STARTS}"].median
        # the rule's pick (the suite's objectives measure instead: gradient="measure")
        auto = auto_gradient_mode(N_STARTS * objective.inputs.shape[1], objective.adjoint_supported)
        gradients = {key: t.median for key, t in timings.items() if not key.startswith("forward x")}
        fastest = min(gradients, key=gradients.get)
        for computation, timing in timings.items():
            lanes = 2 * N_STARTS if computation == f"forward x{2 * N_STARTS}" else N_STARTS
            ratio = (timing.median / lanes) / (base / N_STARTS)
            picks = ", ".join(p for p, mode in (("auto", auto), ("fastest", fastest)) if mode == computation)
            lines.append(f"| {name} | {computation} | {1e3 * timing.median:.1f} | {ratio:.2f} | {picks} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(bf.PROBLEMS), choices=bf.PROBLEMS)
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="timed calls per computation (median)"
    )
    args = parser.parse_args(argv)
    print("\n".join(table(tuple(args.problems), args.repeats)))


if __name__ == "__main__":
    main()
