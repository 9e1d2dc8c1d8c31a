"""Perceptual decision making: decide which of two noisy stimuli is stronger (random-dot motion)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._base import (
    AbstractTask,
    as_bool,
    as_count,
    as_ms,
    as_tuple,
    check_fractions,
    choice,
    decision_targets,
    duration_steps,
    standard_normal,
    uniforms,
)


def noisy_evidence(
    u: Float[Array, "n B 2"], side: Int[Array, " B"], coherence: Float[Array, " B"], sigma: float, dt: float
) -> Float[Array, "n B 2"]:
    """Stimulus strength of the (left, right) evidence at each step, in [0, 1], given uniforms ``u``.

    NeuroGym's two-choice stimulus: ``0.5 ± coherence/2`` (plus on the correct ``side``) with white noise
    of standard deviation ``s = sigma/√dt`` per step, so the noise integrated over a period does not depend
    on dt; clipped to [0, 1] because it becomes a firing rate (NeuroGym does not clip).

    The clip shrinks the mean right−left difference below ``coherence`` unless ``s`` is small against 0.5:
    for small coherences by the factor ``P(0 < 0.5 + s·Z < 1) = 2Φ(0.5/s) − 1``, the mean of the clipped
    normal (tested against it). At the default sigma 0.5 that is 0.68 at dt 1 ms (``s`` = 0.5; 0.66 at
    coherence 0.512), 0.38 at dt 0.25 ms, 0.95 at dt 4 ms and 0.998 at dt 10 ms: with sigma 0.5 the task
    gets harder as dt shrinks (the SNR of the evidence integrated over 1 s at coherence 0.128 measured 4.9
    at dt 0.25 ms, 5.5 at 1 ms, 5.9 at 10 ms, against 5.7 unclipped). Keep ``sigma/√dt ≲ 0.15`` (factor
    ≥ 0.999) for the stated statistics at every coherence up to ~0.1, ``≲ 0.1`` up to 0.512.
    """
    sign = jnp.where(jnp.arange(2)[None, :] == side[:, None], 1.0, -1.0)  # [B, 2]
    mean = 0.5 + 0.5 * coherence[:, None] * sign
    noise = sigma / jnp.sqrt(dt) * standard_normal(u)
    return jnp.clip(mean + noise, 0.0, 1.0).astype(jnp.float32)


class PerceptualDecisionMaking(AbstractTask):
    """Perceptual decision making: report the side of the stronger of two noisy stimuli.

    Choose it for evidence integration over time at graded difficulty (random-dot motion discrimination,
    Britten et al. 1992; NeuroGym's ``PerceptualDecisionMaking``). Periods: fixation, stimulus, delay,
    decision (100, 1,000, 0, 100 ms by default).

    Inputs: three groups of ``channels_per_group`` channels — fixation, left evidence, right evidence. The
    fixation group fires at ``fixation_rate`` until the response is allowed (its offset is the go signal).
    During the stimulus each evidence group fires at ``stimulus_rate`` times its strength
    ``0.5 ± coherence/2 + noise`` (see `noisy_evidence`; the correct side gets the plus); ``coherence`` is
    drawn per trial from ``coherences`` (fractions, 0.512 = 51.2 %), ``sigma`` (per √ms) scales the
    stimulus noise. The strength is clipped to [0, 1]: at the default sigma and dt the mean left–right
    difference is 0.68 × coherence, less at smaller dt (see `noisy_evidence`). Poisson encoding adds
    spike-count noise on top.

    At coherence 0 (one trial in five with the default ``coherences``, as in NeuroGym) both sides get the
    same strength and the label is a coin flip the stimulus does not tell, so with the defaults no answer
    is right in more than 0.9 of trials on average; stimulus noise and Poisson spike counts lower the
    ceiling further (an observer that picks the evidence group with more spikes in the stimulus period
    scores 0.88 at dt 1 ms, 0.90 at dt 10 ms, ± 0.005 over 4,000 trials).

    Classes: 0 fixate, 1 left, 2 right. ``labels`` is the trial's answer (1 or 2); ``targets`` are 0 outside
    the decision period and the label inside it. ``mask`` is the decision period; ``supervise_fixation``
    adds the steps before it (target 0), so the network also learns to withhold its answer.

    Reaction-time variant (``reaction_time=True``): the response is allowed from stimulus onset (fixation
    input off there, as NeuroGym's ``ReactionTime`` wrapper); the decision period, where targets are the
    label and the mask applies, runs from ``min_reaction_time`` after stimulus onset to the end of
    the trial, so the network is free to decide during the first ``min_reaction_time`` ms.
    `response_window` returns it; ``periods["decision"]`` and ``window("decision")`` stay the trailing
    ``decision_duration`` of the trial's time line.

    Rates in Hz, durations and ``dt`` in ms (multiples of dt).

    Examples:
        >>> import jax
        >>> from diffbrain import tasks
        >>> task = tasks.PerceptualDecisionMaking(encoding="rate")
        >>> batch = task.sample(jax.random.key(0), 8)
        >>> batch.inputs.shape, task.n_outputs
        ((1200, 8, 75), 3)
        >>> batch.targets[-1].tolist() == batch.labels.tolist()
        True

    ??? cite "Reference"
        Britten, K. H., Shadlen, M. N., Newsome, W. T. & Movshon, J. A. (1992). The analysis of visual
        motion: a comparison of neuronal and psychophysical performance. J. Neurosci. 12, 4745–4765.
        Molano-Mazón, M. et al. (2022). NeuroGym: an open resource for developing and sharing neuroscience
        tasks. PsyArXiv aqc9n.
    """

    dt: float = eqx.field(default=1.0, static=True, converter=as_ms)
    fixation_duration: float = eqx.field(default=100.0, static=True, converter=as_ms)
    stimulus_duration: float = eqx.field(default=1000.0, static=True, converter=as_ms)
    delay_duration: float = eqx.field(default=0.0, static=True, converter=as_ms)
    decision_duration: float = eqx.field(default=100.0, static=True, converter=as_ms)
    coherences: tuple[float, ...] = eqx.field(
        default=(0.0, 0.064, 0.128, 0.256, 0.512), static=True, converter=as_tuple
    )
    sigma: float = 0.5
    stimulus_rate: float = 40.0
    fixation_rate: float = 40.0
    reaction_time: bool = eqx.field(default=False, static=True, converter=as_bool)
    min_reaction_time: float = eqx.field(default=0.0, static=True, converter=as_ms)
    supervise_fixation: bool = eqx.field(default=False, static=True, converter=as_bool)
    channels_per_group: int = eqx.field(default=25, static=True, converter=as_count)
    encoding: str = eqx.field(default="poisson", static=True)

    def _check(self, owner: str) -> None:
        check_fractions(owner, "coherences", self.coherences)
        if self.stimulus_duration <= 0:
            raise ValueError(f"{owner}: `stimulus_duration` must be > 0 ms, got {self.stimulus_duration}.")
        if self.reaction_time:
            offset = duration_steps(owner, "min_reaction_time", self.min_reaction_time, self.dt)
            remaining = self.n_steps - self.periods["stimulus"].start
            if offset >= remaining:
                raise ValueError(
                    f"{owner}: `min_reaction_time`={self.min_reaction_time} ms leaves no decision period; "
                    "make it shorter than the stimulus, delay and decision periods together."
                )
            return
        if self.min_reaction_time != 0:
            raise ValueError(
                f"{owner}: `min_reaction_time` only applies with reaction_time=True; set reaction_time=True "
                f"or leave min_reaction_time at 0 (got {self.min_reaction_time!r})."
            )
        if self.decision_duration <= 0:
            raise ValueError(f"{owner}: `decision_duration` must be > 0 ms, got {self.decision_duration}.")

    @property
    def interval_fields(self) -> dict[str, tuple[float, float]]:
        return {"sigma": (0.0, float("inf"))}

    @property
    def positive_fields(self) -> dict[str, str]:
        return {"stimulus_rate": "the stimulus carries the answer"}

    def response_window(self) -> np.ndarray:
        """The ``decision`` period, or with ``reaction_time`` every step from ``min_reaction_time`` after
        stimulus onset to the end of the trial."""
        if not self.reaction_time:
            return self.window("decision")
        offset = duration_steps(type(self).__name__, "min_reaction_time", self.min_reaction_time, self.dt)
        return np.arange(self.n_steps) >= self.periods["stimulus"].start + offset

    @property
    def period_fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("fixation", "fixation_duration"),
            ("stimulus", "stimulus_duration"),
            ("delay", "delay_duration"),
            ("decision", "decision_duration"),
        )

    @property
    def flag_fields(self) -> tuple[str, ...]:
        return ("reaction_time", "supervise_fixation")

    @property
    def rate_fields(self) -> tuple[str, ...]:
        return ("stimulus_rate", "fixation_rate")

    @property
    def n_groups(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 3

    def _trial(
        self, key: PRNGKeyArray, batch_size: int
    ) -> tuple[Float[Array, "T B 3"], Int[Array, "T B"], Bool[Array, "T B"], Int[Array, " B"]]:
        stimulus = self.periods["stimulus"]
        shape = (stimulus.stop - stimulus.start, batch_size, 2)
        side_u, coherence_u, noise_u = uniforms(key, (batch_size,), (batch_size,), shape)
        side = (side_u < 0.5).astype(jnp.int32)  # 0 left, 1 right
        labels = side + 1
        coherence = jnp.asarray(self.coherences, jnp.float32)[choice(coherence_u, len(self.coherences))]
        strength = noisy_evidence(noise_u, side, coherence, self.sigma, self.dt)
        evidence = jnp.zeros((self.n_steps, batch_size, 2), jnp.float32).at[stimulus].set(strength)

        decision = self.response_window()
        fixation = self.window("fixation") if self.reaction_time else ~decision
        fixation_rates = jnp.where(jnp.asarray(fixation)[:, None], self.fixation_rate, 0.0)
        fixation_rates = jnp.broadcast_to(fixation_rates, (self.n_steps, batch_size))[..., None]
        rates = jnp.concatenate([fixation_rates, self.stimulus_rate * evidence], axis=-1)
        targets, mask = decision_targets(decision, labels, fixation if self.supervise_fixation else None)
        return rates, targets, mask, labels
