"""The reference backend's flat offsets into the arrival ring, ``slot·n_post + column``, in a dtype that holds
them: in int32 they wrapped once L·n_post ≥ 2³¹, so a synapse landed a step early or was dropped (review s22
#3). Only the helper is called, with the ring's shape: no ring is allocated."""

import jax
import jax.numpy as jnp
import pytest

from diffbrain.ops.kernels import reference

N_POST = 2**30  # int32 indices address columns up to 2³¹ − 1
LENGTH = 3  # a ring of 3·2³⁰ entries


def one_synapse():
    """Neuron 0 with one row, delayed 2 steps, and one synapse onto column 5, all int32."""
    row_ptr, lag = jnp.array([0, 1], jnp.int32), jnp.array([2], jnp.int32)
    indptr, indices = jnp.array([0, 1], jnp.int32), jnp.array([5], jnp.int32)
    return row_ptr, lag, indptr, indices


def test_offsets_past_int32_are_computed_in_int64():
    source, target = reference._arrival_synapses(*one_synapse(), jnp.int32(0), (LENGTH, N_POST))
    assert source.tolist() == [0]
    assert target.dtype == jnp.int64 and target.tolist() == [2 * N_POST + 5]  # slot 2, column 5


def test_offsets_past_int32_without_x64_are_refused():
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match=r"ring \[L = 3, n_post = 1073741824\].*jax_enable_x64"):
            reference._arrival_synapses(*one_synapse(), jnp.int32(0), (LENGTH, N_POST))


def test_a_ring_int32_addresses_keeps_the_indices_dtype():
    _, target = reference._arrival_synapses(*one_synapse(), jnp.int32(1), (4, 6))
    assert target.dtype == jnp.int32 and target.tolist() == [(1 + 2) * 6 + 5]


@pytest.mark.parametrize(("length", "n_post"), [(2, 2**30), (1, 2**31)])
def test_the_largest_ring_int32_addresses_keeps_int32(length, n_post):
    """2³¹ entries: offsets 0 … 2³¹ − 1, the largest int32."""
    assert reference._ring_offset_dtype(jnp.int32, length, n_post) == jnp.int32


def test_one_entry_more_needs_int64():
    assert reference._ring_offset_dtype(jnp.int32, 1, 2**31 + 1) == jnp.int64
    with jax.enable_x64(False), pytest.raises(ValueError, match="more entries than int32"):
        reference._ring_offset_dtype(jnp.int32, 1, 2**31 + 1)
