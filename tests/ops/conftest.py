"""Shared fixtures of the ops tests: every test taking ``backend`` runs once per backend usable here."""

import jax
import jax.numpy as jnp
import numpy as np

from diffbrain import ops

SHAPES = [(1, 7, 0.5), (13, 9, 0.3), (20, 30, 0.0), (40, 25, 0.12)]
"""(n_pre, n_post, p): one row; a small dense-ish matrix; no synapses at all; many empty rows."""


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", ops.backends())


def random_csr(seed: int, n_pre: int, n_post: int, p: float, dtype=jnp.float64, homogeneous=False) -> ops.CSR:
    """A random CSR built from shuffled edges (unsorted builder input), random weights of ``dtype``."""
    rng = np.random.default_rng(seed)
    pre, post = np.nonzero(rng.random((n_pre, n_post)) < p)
    order = rng.permutation(pre.size)
    weight = np.asarray(0.7, dtype) if homogeneous else rng.normal(size=pre.size).astype(dtype)[order]
    return ops.CSR.from_edges(pre[order], post[order], weight, (n_pre, n_post))


def random_spikes(seed: int, shape: tuple[int, ...], kind: str, dtype=jnp.float64) -> jax.Array:
    """Spikes of ``kind`` "bool", "int" (counts 0–2) or "float" (surrogate values, ~half zero)."""
    rng = np.random.default_rng(seed)
    active = rng.random(shape) < 0.4
    values = {"bool": active, "int": active * rng.integers(1, 3, shape), "float": active * rng.random(shape)}
    return jnp.asarray(values[kind].astype(dtype) if kind == "float" else values[kind])
