"""A tiny evidence-accumulation-like task, so the learning tests do not depend on `diffbrain.tasks`."""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array


class SyntheticBatch(NamedTuple):
    inputs: Array  # [T, B, n_in]
    targets: Array  # [T, B]
    mask: Array  # [T, B]
    labels: Array  # [B]


class CueCounting(eqx.Module):
    """Which side showed more cues? Cues, a delay, then a recall cue; the loss is on the recall window.

    Four input groups of ``group`` Poisson channels: left cues, right cues, recall, background noise.
    """

    n_cues: int = eqx.field(default=3, static=True)
    cue: int = eqx.field(default=10, static=True)
    gap: int = eqx.field(default=5, static=True)
    delay: int = eqx.field(default=20, static=True)
    recall: int = eqx.field(default=20, static=True)
    group: int = eqx.field(default=10, static=True)
    rate: float = eqx.field(default=0.2, static=True)
    noise: float = eqx.field(default=0.02, static=True)
    dtype: str = eqx.field(default="float32", static=True)

    @property
    def n_inputs(self) -> int:
        return 4 * self.group

    @property
    def n_outputs(self) -> int:
        return 2

    @property
    def n_steps(self) -> int:
        return self.n_cues * (self.gap + self.cue) + self.delay + self.recall

    def sample(self, key, batch_size: int) -> SyntheticBatch:
        k_side, k_spikes = jax.random.split(key)
        sides = jax.random.bernoulli(k_side, 0.5, (batch_size, self.n_cues)).astype(jnp.int32)
        labels = (2 * jnp.sum(sides, axis=1) > self.n_cues).astype(jnp.int32)
        t = jnp.arange(self.n_steps)
        cue_index = t // (self.gap + self.cue)
        in_cue = (t % (self.gap + self.cue) >= self.gap) & (cue_index < self.n_cues)
        side = sides[:, jnp.minimum(cue_index, self.n_cues - 1)].T  # [T, B]
        channel_group = jnp.arange(self.n_inputs) // self.group  # 0 left, 1 right, 2 recall, 3 noise
        cue_on = in_cue[:, None, None] & (channel_group[None, None] == side[:, :, None])
        recall_on = (t >= self.n_steps - self.recall)[:, None, None] & (channel_group == 2)[None, None]
        rates = jnp.where(cue_on | recall_on, self.rate, 0.0) + jnp.where(channel_group == 3, self.noise, 0.0)
        shape = (self.n_steps, batch_size, self.n_inputs)
        inputs = (jax.random.uniform(k_spikes, shape) < rates).astype(self.dtype)
        mask = jnp.broadcast_to((t >= self.n_steps - self.recall)[:, None], (self.n_steps, batch_size))
        return SyntheticBatch(inputs, jnp.broadcast_to(labels, mask.shape), mask, labels)


@pytest.fixture(scope="session")
def cue_task():
    """The factory of the synthetic task (keyword arguments as `CueCounting`'s fields)."""
    return CueCounting
