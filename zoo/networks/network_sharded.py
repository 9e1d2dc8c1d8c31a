"""A `Network` simulated across several devices: each device integrates one block of postsynaptic neurons,
and the spikes are all-gathered every step (the `EINetwork` counterpart is `simulate_sharded`).

Each device keeps the state of ``m = ⌈n/D⌉`` neurons — their neuron and receptor state, their columns of
every arrival ring (``[L, m]``) — with their parameters, Poisson drives, pulses and ``I_ext``, and of each
receptor's `DelayedCSR` only the synapses onto its own neurons: every (presynaptic neuron, delay) row, its
own columns. The last block is padded with copies of the last neuron whose spikes are masked out; the blocks'
synapses are padded to one length with synapses in an extra row of an extra presynaptic neuron that never
spikes (the gap junctions' with zero conductance). One step costs a device ``1/D`` of the synaptic and
neuron work, one all-gather of the ``n`` spikes and, with gap junctions, one of the ``n`` potentials (a
junction reads its neighbour's ``V``).

The Poisson background hashes each neuron's global index, so every device draws its neurons' numbers of the
one-device run. Each postsynaptic neuron sums the same synapses in the same order as `Network.simulate`, so
the results are identical wherever the arrival kernel sums in a fixed order (see `simulate_sharded`'s module
doc); gradients are equal up to rounding.

What it is for: several GPUs (or hosts, with `jax.distributed`) for networks such as the full-scale
`Microcircuit` or `MultiArea`. The blocks are cut on the host (once while the network lives: 0.6 s for
2.1·10⁷ synapses) and each is placed on its device, so no device holds the whole connectivity, and each step
touches only its block (under ``grad`` the weights are traced and gathered into the blocks in the trace).
The state, the per-neuron parameters and the (neuron, delay) rows' index arrays are replicated. Fake CPU
devices of one host share its cores, so there it gains nothing: the microcircuit at scale 0.1 (7,717
neurons, 2.9·10⁷ synapses) took 1.04 s per biological second on two CPU devices of the 2-core machine
against 1.01 s for `Network.simulate` (a 100 ms call: 0.30 s against 0.12 s, the weights' placement
included). Not yet timed on GPUs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, PRNGKeyArray

from ...ops.scan import checked_unroll
from .._checks import refuse_half_precision_run
from .delays import DelayedCSR
from .network import (
    _TOO_MANY_SPIKES,
    Network,
    NetworkResult,
    NetworkState,
    Pulse,
    _as_list,
    _check_count,
    _check_run,
    _fired_positions,
    _record_step,
    _scan_steps,
)
from .sharded import (
    AXIS,
    _block,
    _check_concrete,
    _check_per_neuron,
    _checked,
    _checked_on_one_device,
    _mesh,
    _onto,
    _placed_blocks,
    _without_synapses,
)


def simulate_network_sharded(
    net: Network,
    duration_ms: float,
    key: PRNGKeyArray | None,
    *,
    devices: Sequence[jax.Device] | None = None,
    dt: float | None = None,
    record: int | np.ndarray = 0,
    state: NetworkState | None = None,
    surrogate: bool = False,
    detach_recurrent: bool = True,
    pulse: Pulse | Sequence[Pulse] | None = None,
    unroll: int = 1,
    checkpoint: int | None = None,
    max_spikes_per_step: int | None = None,
    check_finite: bool = True,
    event_scan: bool = False,
) -> NetworkResult:
    """`Network.simulate` with the postsynaptic neurons split over ``devices``.

    The same simulation — the same counts, raster and final state (see the module doc on summation order) —
    computed by ``len(devices)`` devices that each integrate ``⌈n/D⌉`` neurons with their incoming synapses,
    rings, background and pulses, and exchange the spikes every step. The connectivity is split on the host
    (O(nnz)), so the projections' and gap junctions' ``indptr`` and ``indices`` must be concrete; weights and
    parameters may be traced: with ``surrogate=True`` the result is differentiable (`eqx.filter_grad`), with
    `Network.simulate`'s gradients.

    Args:
        net: the network; its neuron and receptor parameters scalars or one per neuron (``[n]``).
        duration_ms, key, dt, record, state, surrogate, detach_recurrent, pulse, unroll, checkpoint,
            max_spikes_per_step, event_scan: as in `Network.simulate` (``state`` holds all ``n`` neurons;
            the result's ``final_state`` too; with ``event_scan`` each device adds the weight gradients of
            its block of synapses in place). A step with more than ``max_spikes_per_step`` recorded spikes
            raises as ``check_finite`` does: eagerly, or under a transformation on one device; under one
            on several devices the check is skipped with a warning.
        devices: the devices (default all of `jax.devices`); one device runs the same code unsplit.
        check_finite: raise if the final state holds NaN or inf. Under a transformation (``jit``, ``vmap``,
            ``grad``, …) with several devices the check is skipped with a warning: XLA cannot raise from one
            device of a sharded computation (it aborts the process); check ``result.final_state`` there.

    Returns:
        A `NetworkResult`, as from `Network.simulate`.

    Raises:
        ValueError: naming the argument — parameters neither scalar nor ``[n]``, no devices, traced
            connectivity, a ``state`` of another network, and `Network.simulate`'s own checks.

    Examples:
        >>> import jax
        >>> from diffbrain import zoo
        >>> from diffbrain.zoo import networks
        >>> net = networks.Network.build(  # 8 neurons driven by Poisson input only
        ...     sizes={"E": 8},
        ...     neuron=zoo.LIF(),
        ...     receptors={"exc": zoo.Expon(tau=5.0, mode="cuba")},
        ...     edges={},
        ...     background=networks.Background(rate=3000.0, weight=50.0, receptor="exc"),
        ... )
        >>> result = networks.simulate_network_sharded(
        ...     net, 100.0, jax.random.key(0), devices=jax.devices()[:1]
        ... )
        >>> result.counts.shape
        (1000, 1)
    """
    if not isinstance(net, Network):
        raise TypeError(f"`net` must be a networks.Network, got {type(net).__name__}.")
    n_steps, record = _check_run(net, duration_ms, dt, record)
    _check_count("checkpoint", checkpoint, "a positive number of steps")
    _check_count("max_spikes_per_step", max_spikes_per_step, "a positive integer")
    capacity = None if max_spikes_per_step is None else min(int(max_spikes_per_step), record.size)
    receptors = {f"receptors[{name!r}]": receptor for name, receptor in net.receptors.items()}
    _check_per_neuron({"neuron": net.neuron, **receptors}, net.n, "simulate_network_sharded")
    matrices = {f"projections[{name!r}].W": projection.W for name, projection in net.projections.items()}
    _check_concrete(
        {**matrices, "gap": net.gap} if net.gap is not None else matrices, "simulate_network_sharded"
    )
    devices, mesh, width = _mesh(devices, net.n)
    unroll = checked_unroll(unroll)
    state, seed = net._start(key, state, surrogate)
    refuse_half_precision_run("simulate_network_sharded", net, state)
    pulses = tuple(net._pulse(p) for p in _as_list(pulse))
    blocks = {name: _placed_blocks(p.W, mesh, width) for name, p in net.projections.items()}
    # per synapse, even when shared: the padding row's junctions must conduct nothing, since the leak term
    # sums every row's conductance, the padding neuron's too
    gap = None if net.gap is None else _placed_blocks(net.gap, mesh, width, shared=False)
    skeleton = dataclasses.replace(  # what the run needs besides the blocks: no nnz-sized arrays
        net,
        projections={
            name: dataclasses.replace(p, W=_without_synapses(p.W)) for name, p in net.projections.items()
        },
        edge_slots={},
        gap=None,
    )
    options = (n_steps, width, surrogate, detach_recurrent, unroll, checkpoint, capacity, bool(event_scan))
    counts, raster, final = _run(
        skeleton, mesh, blocks, gap, _onto(mesh, state), seed, pulses, jnp.asarray(record), *options
    )
    final, counts = _checked(final, counts, devices, check_finite)
    if capacity is None:
        return NetworkResult(net.dt, net.names, net.sizes, counts, raster, jnp.asarray(record), final)
    spikes = _within_capacity(raster, capacity, devices)
    return NetworkResult(net.dt, net.names, net.sizes, counts, None, jnp.asarray(record), final, spikes)


def _within_capacity(positions: Array, capacity: int, devices: list[jax.Device]) -> Array:
    """The first ``capacity`` of ``positions`` (``[T, capacity + 1]``, per step the recorded neurons that
    fired), checked that none fired beyond them (their last column unused; see `_checked_on_one_device`)."""

    def check(positions):
        return (eqx.error_if(positions, jnp.any(positions[:, capacity] >= 0), _TOO_MANY_SPIKES),)

    skipped = (
        "max_spikes_per_step's check is skipped under jit, vmap or grad on several devices (XLA cannot "
        "raise from one device of a sharded computation): steps with more recorded spikes keep the first "
        "max_spikes_per_step of them."
    )
    (positions,) = _checked_on_one_device(check, (positions,), devices, skipped)
    return positions[:, :capacity]


def _neuron_axis_last(x: Array) -> P:
    """The partition of a per-neuron array (neurons on its last axis) or a replicated scalar."""
    return P() if x.ndim == 0 else P(*(None,) * (x.ndim - 1), AXIS)


@functools.partial(jax.jit, static_argnums=(1, 8, 9, 10, 11, 12, 13, 14, 15))
def _run(
    net,
    mesh,
    blocks,
    gap,
    state,
    seed,
    pulses,
    record,
    n_steps,
    width,
    surrogate,
    detach,
    unroll,
    checkpoint,
    capacity,
    event,
):
    n, padded = net.n, mesh.size * width
    population = net._population()

    def pad(x):  # along the neuron axis (the last): copies of the last neuron, whose spikes are masked out
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, padded - n)], mode="edge")

    def per_neuron(x):
        return eqx.is_array(x) and x.ndim >= 1 and x.shape[-1] == n

    rows = {}  # per projection: its (neuron, delay) rows plus the padding row, of the extra neuron n
    for name, projection in net.projections.items():
        R = projection.W.shape[0]
        row_ptr = jnp.append(projection.row_ptr, R + 1).astype(projection.W.indices.dtype)
        source = jnp.append(projection.source, n).astype(projection.source.dtype)
        rows[name] = (source, jnp.append(projection.lag, 1).astype(projection.lag.dtype), row_ptr)
    parameters = (net.neuron, net.receptors, net.I_ext, net.drives)
    varying, shared = eqx.partition(parameters, per_neuron)
    varying = jax.tree.map(pad, varying)
    spikes = jnp.pad(state.spikes, (0, padded - n))  # all of them, on every device (padding: silent)
    local = jax.tree.map(lambda x: x if x.ndim == 0 else pad(x), state)._replace(spikes=spikes)
    valid = jnp.pad(jnp.ones(n, state.spikes.dtype), (0, padded - n))
    amplitudes = tuple(pad(amplitude) for amplitude, _, _ in pulses)
    windows = tuple((start, stop) for _, start, stop in pulses)

    def mask(spikes, valid):  # the padding neurons never spike
        return spikes * valid if surrogate else spikes & valid

    def device(blocks, gap, varying, local, valid, spikes, amplitudes):
        neuron, receptors, I_ext, drives = eqx.combine(varying, shared)
        projections = {name: DelayedCSR(_block(*block, width), *rows[name]) for name, block in blocks.items()}
        gap_block = None if gap is None else _block(*gap, width)
        block = Network(
            neuron,
            receptors,
            projections,
            {},
            drives,
            gap_block,
            I_ext,
            net.dt,
            ("block",),
            (width,),
            net.receptor_names,
            net.ring_length,
        )
        block_pulses = tuple((a, *window) for a, window in zip(amplitudes, windows, strict=True))
        first = jax.lax.axis_index(AXIS) * width  # this block's first neuron (its background's hash)
        # everything traced that a step uses comes in through its arguments (as `ops.event_scan` needs)
        params = (block, seed, block_pulses, first, valid, population, record)

        def body(params, carry, _):
            block, seed, block_pulses, first, valid, population, record = params
            local, spikes = carry
            silent = jnp.zeros(1, spikes.dtype)  # the padding row's presynaptic neuron
            fed = jax.lax.stop_gradient(spikes) if detach else spikes
            V_felt = None
            if block.gap is not None:  # the junctions read every neuron's potential
                V_all = jax.lax.all_gather(local.neurons.V, AXIS, tiled=True)
                V_felt = jnp.concatenate([V_all[:n], jnp.zeros(1, V_all.dtype)])
            fed = jnp.concatenate([fed[:n], silent])
            local, s = block._advance(local, fed, seed, block_pulses, surrogate, V_felt, first)
            s = mask(s, valid)
            spikes = jax.lax.all_gather(s, AXIS, tiled=True)
            counts, raster = _record_step(spikes[:n], population, len(net.sizes), record, surrogate, None)
            if capacity is not None:  # one position more, which only a step with too many spikes fills
                raster = _fired_positions(raster, capacity + 1)
            return (local._replace(spikes=s), spikes), (counts, raster)

        (local, spikes), (counts, raster) = _scan_steps(
            body, params, (local, spikes), n_steps, unroll, checkpoint, event
        )
        return counts, raster, local, spikes

    split = P(AXIS)
    local_specs = jax.tree.map(_neuron_axis_last, local)
    in_specs = (
        jax.tree.map(lambda x: P() if x.ndim == 0 else split, blocks),
        jax.tree.map(lambda x: P() if x.ndim == 0 else split, gap),
        jax.tree.map(_neuron_axis_last, varying),
        local_specs,
        split,
        P(),
        tuple(split for _ in amplitudes),
    )
    run = jax.shard_map(
        device, mesh=mesh, in_specs=in_specs, out_specs=(P(), P(), local_specs, P()), check_vma=False
    )
    counts, raster, local, spikes = run(blocks, gap, varying, local, valid, spikes, amplitudes)
    final = jax.tree.map(lambda x: x if x.ndim == 0 else x[..., :n], local)
    return counts, raster, final._replace(spikes=spikes[:n])
