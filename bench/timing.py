"""Wall-clock timing of JAX computations: compile time and run time kept apart, medians over repeats."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
"""The `jax.monitoring` events whose durations make up compile time: tracing, lowering, XLA compilation."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """Timings of one computation, s.

    Attributes:
        compile: tracing, lowering and XLA compilation during the warm-up calls, as JAX reports them, s.
        median, min, max, iqr: statistics of the timed runs, s.
        runs: every timed run, s, in the order they ran.
    """

    compile: float
    median: float
    min: float
    max: float
    iqr: float
    runs: tuple[float, ...]

    @property
    def repeats(self) -> int:
        """Number of timed runs."""
        return len(self.runs)


def _call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


@contextlib.contextmanager
def compile_seconds() -> Iterator[list[float]]:
    """Collect the durations of JAX's compile events while the context is open."""
    durations: list[float] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event in COMPILE_EVENTS:
            durations.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield durations
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def measure_side_by_side(
    fns: Mapping[str, Callable[[], object]], repeats: int = 5, warmup: int = 2
) -> dict[str, Timing]:
    """Time several zero-argument JAX computations in turns, so machine noise hits them alike.

    Each function is first called ``warmup`` times: compile time is what JAX reports (through
    `jax.monitoring`) for tracing, lowering and compiling during these calls — a library may compile again
    on its second call, as brainstate's `jit` does. Then the functions run ``repeats`` times each, in
    round-robin order, each call waited for with `jax.block_until_ready`.

    Args:
        fns: computations by name; each returns JAX arrays (or any PyTree of them).
        repeats: timed runs of each function (≥ 1).
        warmup: untimed calls of each function before the timed runs (≥ 1).

    Returns:
        A `Timing` per name.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x, sin = jnp.ones(1000), jax.jit(jnp.sin)
        >>> timings = measure_side_by_side({"sin": lambda: sin(x)}, repeats=3)
        >>> timings["sin"].repeats
        3
    """
    if repeats < 1 or warmup < 1:
        raise ValueError(f"`repeats` and `warmup` must be >= 1, got repeats={repeats}, warmup={warmup}.")
    compile_time = {}
    for name, fn in fns.items():
        with compile_seconds() as durations:
            for _ in range(warmup):
                _call(fn)
        compile_time[name] = sum(durations)
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(_call(fn))
    timings = {}
    for name, times in runs.items():
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        timings[name] = Timing(
            compile=compile_time[name],
            median=float(median),
            min=min(times),
            max=max(times),
            iqr=float(q3 - q1),
            runs=tuple(times),
        )
    return timings


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> Timing:
    """`measure_side_by_side` for one computation."""
    return measure_side_by_side({"fn": fn}, repeats, warmup)["fn"]
