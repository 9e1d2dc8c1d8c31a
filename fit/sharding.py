"""Spreading a fit's batch (starts of L-BFGS and Adam, population members of the search methods) over devices.

A batch of ``n`` parameter vectors runs on ``k = min(n, number of devices)`` devices
(`BatchSharding.at_most`). It is padded to ``m``, the next multiple of ``k``, by repeating its own rows
(valid points, so padding never adds a NaN), and laid out with a `NamedSharding` over a 1-D mesh of the
devices (axis ``"batch"``): each device simulates ``m / k`` vectors. The methods mask the padded rows out
of every decision (they are never alive, never charged, never reported), and the padded rows do not change
the real ones (each row is its own `vmap` lane), so a sharded fit equals the single-device fit to float
rounding (measured on CPU: bit for bit for DE, PSO and Adam; L-BFGS to ~1e-13 of the loss). Everything
else (the recording, the search state) is replicated.

With one device (or ``devices=1``) nothing is padded or placed: the batch runs as plain `vmap`.

Examples:
    >>> from diffbrain.fit.sharding import batch_devices
    >>> batch = batch_devices(1)
    >>> batch.size, batch.padded(5)
    (1, 5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Bool

Devices = int | Sequence[jax.Device] | None
"""What a ``devices=`` argument accepts: None (every device of the default backend), a count (the first
that many), or the devices themselves."""

AXIS = "batch"
"""Name of the mesh axis the batch is split along."""


class BatchSharding:
    """A batch axis split over ``devices`` (see the module docstring).

    Args:
        devices: the devices, in mesh order (at least one, no repeats).

    Attributes:
        devices: the devices, as a tuple.
        sharding: `NamedSharding` of an array whose leading axis is the batch (None with one device).
    """

    def __init__(self, devices: Sequence[jax.Device]):
        self.devices = tuple(devices)
        if not self.devices:
            raise ValueError("`devices` is empty; pass None (all devices), a count or a list of devices.")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"`devices` lists a device twice: {self.devices}.")
        sharded = len(self.devices) > 1 or self.devices[0] != jax.devices()[0]
        mesh = Mesh(np.asarray(self.devices), (AXIS,)) if sharded else None
        self.sharding = NamedSharding(mesh, PartitionSpec(AXIS)) if sharded else None

    @property
    def size(self) -> int:
        """Number of devices ``k``."""
        return len(self.devices)

    def at_most(self, n: int) -> BatchSharding:
        """The first ``min(k, n)`` of the devices: a batch of ``n < k`` rows runs on ``n`` devices rather
        than being padded with ``k − n`` copies that would only repeat work."""
        return self if n >= self.size else BatchSharding(self.devices[:n])

    def padded(self, n: int) -> int:
        """``m``: ``n`` rounded up to a multiple of the device count."""
        return -(-n // self.size) * self.size

    def pad(self, x: ArrayLike, fill: bool | float | None = None) -> Array:
        """``x`` (leading axis the batch, ``n`` rows) padded to `padded` ``(n)`` rows: its own rows repeated
        in order (``fill=None``, for points) or the constant ``fill`` (e.g. False for a mask)."""
        x = jnp.asarray(x)
        n = x.shape[0]
        m = self.padded(n)
        if m == n:
            return x
        if fill is None:
            return jnp.take(x, np.arange(m) % n, axis=0)
        return jnp.concatenate([x, jnp.full((m - n, *x.shape[1:]), fill, x.dtype)])

    def put(self, x: ArrayLike, fill: bool | float | None = None) -> Array:
        """``x`` padded (see `pad`) with its batch axis split over the devices (inside or outside `jit`)."""
        return self.constrain(self.pad(x, fill))

    def constrain(self, tree):
        """Every leaf of ``tree`` (leading axis the batch, already padded) split over the devices; inside
        `jit` this tells the compiler to partition the computation rather than leaving the layout to it."""
        return tree if self.sharding is None else jax.lax.with_sharding_constraint(tree, self.sharding)

    def evaluate(self, fn: Callable[[Array], Array], population: ArrayLike) -> Array:
        """``fn(population)`` for a batched ``fn`` (e.g. `Objective.values`), the population padded and split
        over the devices, the padded rows dropped from the result (inside or outside `jit`)."""
        n = jnp.shape(population)[0]
        return fn(self.put(population))[:n]

    def mask(self, flags: Bool[ArrayLike, " n"]) -> Array:
        """A per-row flag array padded with False and split over the devices."""
        return self.put(jnp.asarray(flags, bool), fill=False)

    def __repr__(self) -> str:
        return f"BatchSharding({self.size} device{'s' if self.size > 1 else ''})"


def batch_devices(devices: Devices | BatchSharding = None) -> BatchSharding:
    """The `BatchSharding` a ``devices=`` argument asks for.

    Args:
        devices: None (every device of the default backend: the batch is sharded whenever there are
            several), a count ``k`` (the first ``k``; 1 switches sharding off), a sequence of devices, or a
            `BatchSharding` (returned as is).
    """
    if isinstance(devices, BatchSharding):
        return devices
    available = jax.devices()
    if devices is None:
        return BatchSharding(available)
    if isinstance(devices, int | np.integer):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"`devices={devices}` asks for more devices than the {len(available)} there are (or fewer "
                f"than 1); pass a count from 1 to {len(available)}, a list of devices, or None for all."
            )
        return BatchSharding(available[: int(devices)])
    return BatchSharding(list(devices))
