"""Evidence accumulation: count left and right cues, hold the answer through a delay, report at recall."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._base import AbstractTask, as_count, as_ms, check_positive, uniforms


class EvidenceAccumulation(AbstractTask):
    """Evidence accumulation (virtual T-maze): report on which side most of the cues appeared.

    Choose it to train working memory over long delays with spiking input, as in e-prop (Bellec et al. 2020)
    and BrainScale. A trial is ``n_cues`` cues, each a ``gap_duration`` of silence followed by
    ``cue_duration`` of cue, then a ``delay_duration`` delay and a ``recall_duration`` recall window:
    7 × (50 + 100) + 1,000 + 150 = 2,200 ms by default (2,200 steps at dt 1 ms).

    Inputs: four groups of ``channels_per_group`` channels, in order left cue, right cue, recall, noise.
    A cue drives its side's group at ``cue_rate`` for its ``cue_duration``; the recall group fires at
    ``recall_rate`` during the recall window; the noise group fires at ``noise_rate`` throughout. Each
    trial draws a side 50/50, and each cue falls on that side with probability ``majority_prob`` (0.7),
    on the other with 0.3.

    Classes: 0 left, 1 right. ``labels`` is the side with more cues (``n_cues`` is odd, so there is no tie).
    There is no fixation class: ``targets`` holds the label at every step and ``mask`` selects the recall
    window.

    Rates in Hz, durations and ``dt`` in ms; every duration must be a multiple of ``dt``.
    `EvidenceAccumulation.shortened()` gives a 200 ms delay (1,400 steps) for quick runs.

    Examples:
        >>> import jax
        >>> from diffbrain import tasks
        >>> task = tasks.EvidenceAccumulation()
        >>> batch = task.sample(jax.random.key(0), 16)
        >>> batch.inputs.shape, batch.targets.shape, task.n_steps
        ((2200, 16, 100), (2200, 16), 2200)
        >>> int(batch.mask[:, 0].sum())  # the 150 ms recall window
        150

    ??? cite "Reference"
        Morcos, A. S. & Harvey, C. D. (2016). History-dependent variability in population dynamics during
        evidence accumulation in cortex. Nat. Neurosci. 19, 1672–1681.
        Bellec, G. et al. (2020). A solution to the learning dilemma for recurrent networks of spiking
        neurons. Nat. Commun. 11, 3625.
    """

    dt: float = eqx.field(default=1.0, static=True, converter=as_ms)
    n_cues: int = eqx.field(default=7, static=True, converter=as_count)
    cue_duration: float = eqx.field(default=100.0, static=True, converter=as_ms)
    gap_duration: float = eqx.field(default=50.0, static=True, converter=as_ms)
    delay_duration: float = eqx.field(default=1000.0, static=True, converter=as_ms)
    recall_duration: float = eqx.field(default=150.0, static=True, converter=as_ms)
    cue_rate: float = 40.0
    recall_rate: float = 40.0
    noise_rate: float = 10.0
    majority_prob: float = 0.7
    channels_per_group: int = eqx.field(default=25, static=True, converter=as_count)
    encoding: str = eqx.field(default="poisson", static=True)

    def _check(self, owner: str) -> None:
        if self.n_cues % 2 == 0:
            raise ValueError(f"{owner}: `n_cues` must be odd (no ties), got {self.n_cues}.")
        check_positive(owner, "cue_duration", self.cue_duration, "ms; the cues carry the answer")
        check_positive(owner, "recall_duration", self.recall_duration, "ms; the loss lives there")

    @property
    def count_fields(self) -> dict[str, int]:
        return {"n_cues": 1}

    @property
    def interval_fields(self) -> dict[str, tuple[float, float]]:
        return {"majority_prob": (0.5, 1.0)}

    @property
    def positive_fields(self) -> dict[str, str]:
        return {"cue_rate": "Hz; the cues carry the answer"}

    @classmethod
    def shortened(cls, **overrides) -> EvidenceAccumulation:
        """The default task with a 200 ms delay (1,400 steps at dt 1 ms), for tests and CI."""
        return cls(**({"delay_duration": 200.0} | overrides))

    def response_window(self) -> np.ndarray:
        """The ``recall`` period."""
        return self.window("recall")

    @property
    def period_fields(self) -> tuple[tuple[str, str], ...]:
        cues = [((f"gap{i}", "gap_duration"), (f"cue{i}", "cue_duration")) for i in range(self.n_cues)]
        tail = (("delay", "delay_duration"), ("recall", "recall_duration"))
        return (*(period for pair in cues for period in pair), *tail)

    @property
    def rate_fields(self) -> tuple[str, ...]:
        return ("cue_rate", "recall_rate", "noise_rate")

    @property
    def n_groups(self) -> int:
        return 4

    @property
    def n_outputs(self) -> int:
        return 2

    def _trial(
        self, key: PRNGKeyArray, batch_size: int
    ) -> tuple[Float[Array, "T B 4"], Int[Array, "T B"], Bool[Array, "T B"], Int[Array, " B"]]:
        side_u, cue_u = uniforms(key, (batch_size, 1), (batch_size, self.n_cues))
        majority_right = side_u < 0.5
        on_majority = cue_u < self.majority_prob
        right = on_majority == majority_right  # [B, n_cues]: True where the cue is on the right
        labels = (right.sum(axis=1) > self.n_cues // 2).astype(jnp.int32)

        cue_index = np.full(self.n_steps, -1)  # which cue is shown at each step, −1 for none
        for i in range(self.n_cues):
            cue_index[self.periods[f"cue{i}"]] = i
        showing = jnp.asarray(cue_index >= 0)[:, None]
        right_now = right.T[np.maximum(cue_index, 0)]  # [T, B]
        cue_rate = jnp.asarray(self.cue_rate, jnp.float32)
        left_rates = jnp.where(showing & ~right_now, cue_rate, 0.0)
        right_rates = jnp.where(showing & right_now, cue_rate, 0.0)
        recall = jnp.asarray(self.response_window())[:, None]
        recall_rates = jnp.broadcast_to(jnp.where(recall, self.recall_rate, 0.0), left_rates.shape)
        noise_rates = jnp.full(left_rates.shape, self.noise_rate)
        rates = jnp.stack([left_rates, right_rates, recall_rates, noise_rates], axis=-1)

        targets = jnp.broadcast_to(labels, (self.n_steps, batch_size))
        mask = jnp.broadcast_to(recall, targets.shape)
        return rates, targets, mask, labels
