"""Delayed match-to-sample: hold a sample stimulus through a delay, then say whether a test matches it."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._base import AbstractTask, as_bool, as_count, as_ms, choice, decision_targets, uniforms


class DelayedMatchToSample(AbstractTask):
    """Delayed match-to-sample: report whether the test stimulus equals the sample seen before the delay.

    Choose it for working memory of a categorical item (Miller, Erickson & Desimone 1996; NeuroGym's
    ``DelayMatchSample``). Periods: fixation, sample, delay, test, decision (300, 500, 1,000, 500, 900 ms by
    default, NeuroGym's timing).

    Inputs: ``1 + n_stimuli`` groups of ``channels_per_group`` channels — fixation, then one group per
    stimulus. The fixation group fires at ``fixation_rate`` until the decision period (its offset is the go
    signal). The sample's group fires at ``stimulus_rate`` during the sample period, the test's during the
    test period. The test matches the sample with probability ``match_prob``; otherwise it is one of the
    other stimuli, uniformly.

    Classes: 0 fixate, 1 match, 2 non-match (NeuroGym's actions). ``labels`` is the trial's answer (1 or 2);
    ``targets`` are 0 outside the decision period and the label inside it. ``mask`` is the decision period;
    ``supervise_fixation`` adds every earlier step (target 0).

    Rates in Hz, durations and ``dt`` in ms (multiples of dt).

    Examples:
        >>> import jax
        >>> from diffbrain import tasks
        >>> task = tasks.DelayedMatchToSample(delay_duration=200.0, encoding="rate")
        >>> batch = task.sample(jax.random.key(0), 4)
        >>> batch.inputs.shape, task.n_outputs
        ((2400, 4, 75), 3)

    ??? cite "Reference"
        Miller, E. K., Erickson, C. A. & Desimone, R. (1996). Neural mechanisms of visual working memory in
        prefrontal cortex of the macaque. J. Neurosci. 16, 5154–5167.
    """

    dt: float = eqx.field(default=1.0, static=True, converter=as_ms)
    fixation_duration: float = eqx.field(default=300.0, static=True, converter=as_ms)
    sample_duration: float = eqx.field(default=500.0, static=True, converter=as_ms)
    delay_duration: float = eqx.field(default=1000.0, static=True, converter=as_ms)
    test_duration: float = eqx.field(default=500.0, static=True, converter=as_ms)
    decision_duration: float = eqx.field(default=900.0, static=True, converter=as_ms)
    n_stimuli: int = eqx.field(default=2, static=True, converter=as_count)
    match_prob: float = 0.5
    stimulus_rate: float = 40.0
    fixation_rate: float = 40.0
    supervise_fixation: bool = eqx.field(default=False, static=True, converter=as_bool)
    channels_per_group: int = eqx.field(default=25, static=True, converter=as_count)
    encoding: str = eqx.field(default="poisson", static=True)

    def _check(self, owner: str) -> None:
        for name in ("sample_duration", "test_duration", "decision_duration"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{owner}: `{name}` must be > 0 ms, got {getattr(self, name)}.")

    @property
    def count_fields(self) -> dict[str, int]:
        return {"n_stimuli": 2}

    @property
    def interval_fields(self) -> dict[str, tuple[float, float]]:
        return {"match_prob": (0.0, 1.0)}

    @property
    def positive_fields(self) -> dict[str, str]:
        return {"stimulus_rate": "the stimuli carry the answer"}

    @property
    def period_fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("fixation", "fixation_duration"),
            ("sample", "sample_duration"),
            ("delay", "delay_duration"),
            ("test", "test_duration"),
            ("decision", "decision_duration"),
        )

    @property
    def flag_fields(self) -> tuple[str, ...]:
        return ("supervise_fixation",)

    @property
    def rate_fields(self) -> tuple[str, ...]:
        return ("stimulus_rate", "fixation_rate")

    @property
    def n_groups(self) -> int:
        return 1 + self.n_stimuli

    @property
    def n_outputs(self) -> int:
        return 3

    def _trial(
        self, key: PRNGKeyArray, batch_size: int
    ) -> tuple[Float[Array, "T B G"], Int[Array, "T B"], Bool[Array, "T B"], Int[Array, " B"]]:
        sample_u, match_u, other_u = uniforms(key, (batch_size,), (batch_size,), (batch_size,))
        sample = choice(sample_u, self.n_stimuli)
        match = match_u < self.match_prob
        # A non-match is any other stimulus: shift the sample by 1 … n_stimuli − 1 places.
        shift = 1 + choice(other_u, self.n_stimuli - 1)
        test = jnp.where(match, sample, (sample + shift) % self.n_stimuli)
        labels = jnp.where(match, 1, 2).astype(jnp.int32)

        sample_on = jnp.asarray(self.window("sample"))[:, None, None]
        test_on = jnp.asarray(self.window("test"))[:, None, None]
        shown = jax.nn.one_hot(sample, self.n_stimuli, dtype=jnp.float32) * sample_on
        shown = shown + jax.nn.one_hot(test, self.n_stimuli, dtype=jnp.float32) * test_on
        decision = self.response_window()
        fixation = jnp.broadcast_to(jnp.asarray(~decision)[:, None, None], (self.n_steps, batch_size, 1))
        rates = jnp.concatenate([self.fixation_rate * fixation, self.stimulus_rate * shown], axis=-1)
        targets, mask = decision_targets(decision, labels, ~decision if self.supervise_fixation else None)
        return rates, targets, mask, labels
