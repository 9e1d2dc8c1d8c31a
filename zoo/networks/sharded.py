"""An `EINetwork` simulated across several devices: each device integrates one block of postsynaptic
neurons, and the spikes are all-gathered every step.

Each device keeps the state of ``m = ⌈n/D⌉`` neurons (the last block padded with neurons whose spikes are
masked out) and, of each projection, only the synapses onto its own neurons: a CSR with every presynaptic
row and ``m`` columns, so one step costs a device ``1/D`` of the synaptic work and one all-gather of the
``n`` spikes (`jax.lax.all_gather`). The blocks' synapses are padded to one length with zero-weight
synapses in an extra presynaptic row that never spikes, so the per-device arrays stack into one sharded
array. Each postsynaptic neuron sums the same synapses in the same order as `simulate` does on one device.

What it is for: several GPUs (or hosts, with `jax.distributed`), whose memory and bandwidth add up. Fake CPU
devices of one host share its cores, so there it is slower: COBA at n = 40,000, 100 ms on the 2-core CPU
(busy) took 0.26 s on two CPU devices against 0.17 s for `simulate` and 0.18 s for one device. Not yet
timed on GPUs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import PRNGKeyArray

from ...ops import CSR, event_matvec
from ...ops.csr import derived
from .._checks import check_dt
from ..simulate import _fail_on_nonfinite
from .ei import EINetwork, EIResult, EIState, _validate

AXIS = "neurons"
"""The mesh axis over which the postsynaptic neurons are split."""


def _column_blocks(W: CSR, n_blocks: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W``'s synapses onto columns ``[d·width, (d+1)·width)`` for each block ``d``, as stacked CSRs
    ``(indptr [D, n_pre + 2], indices [D, k], data [D, k] or [])`` of shape ``(n_pre + 1, width)``; the
    extra row ``n_pre`` holds the zero-weight padding up to the longest block's ``k``."""
    indptr, indices = np.asarray(W.indptr), np.asarray(W.indices)
    data = np.asarray(W.data)
    n_pre = W.shape[0]
    rows = np.repeat(np.arange(n_pre), np.diff(indptr))
    block = indices // width
    members = [np.flatnonzero(block == d) for d in range(n_blocks)]  # CSR order kept within a block
    longest = max(len(k) for k in members)
    stacked_indptr = np.zeros((n_blocks, n_pre + 2), indptr.dtype)
    stacked_indices = np.zeros((n_blocks, longest), indices.dtype)
    stacked_data = np.zeros((n_blocks, longest), data.dtype)
    for d, k in enumerate(members):
        counts = np.bincount(rows[k], minlength=n_pre)
        counts = np.append(counts, longest - len(k))  # the padding row
        stacked_indptr[d, 1:] = np.cumsum(counts)
        stacked_indices[d, : len(k)] = indices[k] - d * width
        if not W.homogeneous:
            stacked_data[d, : len(k)] = data[k]
    return stacked_indptr, stacked_indices, data if W.homogeneous else stacked_data


def _check_shared_parameters(net: EINetwork) -> None:
    for name in ("neuron", "exc", "inh", "I_ext"):
        shapes = {leaf.shape for leaf in jax.tree.leaves(getattr(net, name)) if hasattr(leaf, "shape")}
        if shapes - {()}:
            raise ValueError(
                f"`net.{name}` has per-neuron parameters (shapes {sorted(shapes - {()})}); "
                "simulate_sharded takes one value per parameter: run it with `simulate`."
            )


def _concrete_structure(net: EINetwork) -> None:
    for name in ("W_E", "W_I"):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(getattr(net, name))):
            raise ValueError(f"`net.{name}` must be concrete: call simulate_sharded outside jit.")


def simulate_sharded(
    net: EINetwork,
    duration_ms: float,
    key: PRNGKeyArray,
    *,
    devices: Sequence[jax.Device] | None = None,
    dt: float = 0.1,
    record: int | np.ndarray = 0,
    state: EIState | None = None,
    check_finite: bool = True,
) -> EIResult:
    """Simulate ``net`` for ``duration_ms`` ms with its postsynaptic neurons split over ``devices``.

    The same simulation as `simulate` (bool spikes, ``surrogate=False``): the same counts, raster and final
    state, computed by ``len(devices)`` devices that each integrate ``⌈n/D⌉`` neurons and their incoming
    synapses and exchange the spikes every step. Build the network outside ``jit`` (its connectivity is
    split on the host, O(nnz)).

    Args:
        net: the network; its neuron, synapse and ``I_ext`` parameters scalars (shared by all neurons).
        duration_ms: simulated time, ms (a multiple of ``dt``).
        key: seeds the initial membrane potentials (`EINetwork.init_state`); ignored when ``state`` is given.
        devices: the devices (default all of `jax.devices`); one device runs the same code unsplit.
        dt: time step, ms.
        record: neuron indices whose spikes to keep (or an int k: neurons 0 … k − 1).
        state: initial state of all ``n`` neurons (to continue a run); default ``net.init_state(key)``.
        check_finite: raise if the final state holds NaN or inf.

    Returns:
        An `EIResult`, as from `simulate`.

    Raises:
        ValueError: naming the argument — per-neuron parameters, no devices, a traced network, a bad
            ``duration_ms`` or ``record``.

    Example:
        >>> import jax
        >>> from diffbrain.zoo import networks
        >>> net = networks.EINetwork.coba(jax.random.key(0), n=400, in_degree=40)
        >>> result = networks.simulate_sharded(net, 50.0, jax.random.key(1), devices=jax.devices()[:1])
        >>> result.counts.shape
        (500, 2)
    """
    if not isinstance(net, EINetwork):
        raise TypeError(f"`net` must be an EINetwork, got {type(net).__name__}.")
    dt = float(check_dt(dt))
    n_steps, record = _validate(net, duration_ms, dt, record)
    _check_shared_parameters(net)
    _concrete_structure(net)
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("`devices` is empty: pass at least one device.")
    n_blocks, n = len(devices), net.n
    width = -(-n // n_blocks)
    padded = n_blocks * width
    mesh = Mesh(np.array(devices), (AXIS,))
    split, whole = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())

    if state is None:
        state = net.init_state(key)

    def pad(x, fill):
        return jax.device_put(jnp.concatenate([x, jnp.full(padded - n, fill, x.dtype)]), split)

    local = jax.tree.map(lambda x: pad(x, 0), state._replace(spikes=state.spikes.astype(bool)))
    local = local._replace(neurons=local.neurons._replace(V=pad(state.neurons.V, net.neuron.V_reset)))
    valid = pad(jnp.ones(n, bool), False)
    spikes = jax.device_put(jnp.concatenate([state.spikes.astype(bool), jnp.zeros(padded - n, bool)]), whole)
    projections = []
    for W in (net.W_E, net.W_I):
        indptr, indices, data = _column_blocks(W, n_blocks, width)
        stacked = (jax.device_put(indptr, split), jax.device_put(indices, split))
        projections.append((*stacked, jnp.asarray(data) if W.homogeneous else jax.device_put(data, split)))
    counts, raster, local, spikes = _run(
        net, mesh, tuple(projections), local, valid, spikes, jnp.asarray(record), n_steps, dt, width
    )
    final = jax.tree.map(lambda x: x[:n], local)._replace(spikes=spikes[:n])
    if check_finite:
        final, counts = _fail_on_nonfinite(final, counts)
    return EIResult(dt, counts, raster, jnp.asarray(record), net.sizes, final)


@functools.partial(jax.jit, static_argnums=(1, 7, 8, 9))
def _run(net, mesh, projections, local, valid, spikes, record, n_steps: int, dt: float, width: int):
    n_e, n = net.sizes[0], net.n
    homogeneous = tuple(W.homogeneous for W in (net.W_E, net.W_I))
    data_specs = tuple(P() if shared else P(AXIS) for shared in homogeneous)
    in_specs = (
        tuple((P(AXIS), P(AXIS), spec) for spec in data_specs),
        P(AXIS),
        P(AXIS),
        P(),
        P(),
    )

    def device(projections, local, valid, spikes, record):
        blocks = []
        for (indptr, indices, data), shared, n_pre in zip(projections, homogeneous, net.sizes, strict=True):
            with derived():  # split from a checked CSR
                blocks.append(CSR(indptr[0], indices[0], data if shared else data[0], (n_pre + 1, width)))
        W_E, W_I = blocks
        silent = jnp.zeros(1, bool)  # the padding row's spike

        def body(carry, _):
            local, spikes = carry
            arriving_e = event_matvec(jnp.concatenate([spikes[:n_e], silent]), W_E)
            arriving_i = event_matvec(jnp.concatenate([spikes[n_e:n], silent]), W_I)
            local = net._integrate(local, arriving_e, arriving_i, dt)
            local = local._replace(spikes=local.spikes & valid)
            spikes = jax.lax.all_gather(local.spikes, AXIS, tiled=True)
            counts = jnp.stack([spikes[:n_e].sum(dtype=jnp.int32), spikes[n_e:n].sum(dtype=jnp.int32)])
            return (local, spikes), (counts, spikes[record])

        (local, spikes), (counts, raster) = jax.lax.scan(body, (local, spikes), None, length=n_steps)
        return counts, raster, local, spikes

    run = jax.shard_map(
        device,
        mesh=mesh,
        in_specs=in_specs,
        out_specs=(P(), P(), P(AXIS), P()),
        check_vma=False,
    )
    return run(projections, local, valid, spikes, record)
