"""Context-dependent decision making: a context cue selects which of two stimulus modalities to report."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
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
    uniforms,
)
from .decision_making import noisy_evidence


class ContextDecisionMaking(AbstractTask):
    """Context-dependent decision making: report the relevant modality's side, ignoring the other modality.

    Choose it for flexible, context-gated computation (Mante, Sussillo, Shenoy & Newsome 2013: colored
    random dots, the context says whether to report motion or color; NeuroGym's ``ContextDecisionMaking``
    with ``use_expl_context=True``). Periods: fixation, stimulus, delay, decision (300, 750, 300, 100 ms
    by default; Mante et al. varied the delay, here it is fixed so every trial has the same length).

    Inputs: seven groups of ``channels_per_group`` channels — fixation, motion context, color context,
    motion left, motion right, color left, color right. The fixation group fires at ``fixation_rate`` until
    the decision period (its offset is the go signal); the cue of the trial's context fires at
    ``context_rate`` throughout the trial (as in NeuroGym). During the stimulus both modalities are shown at
    once, each as `noisy_evidence` (``stimulus_rate`` times ``0.5 ± coherence/2 + noise``, clipped to
    [0, 1]: at the default sigma and dt the mean left–right difference is 0.68 × coherence, less at smaller
    dt) with its own side and its own coherence, drawn independently from ``coherences`` (fractions).

    Classes: 0 fixate, 1 left, 2 right. ``labels`` is the side of the modality the context selects (1 or 2);
    ``targets`` are 0 outside the decision period and the label inside it. ``mask`` is the decision period;
    ``supervise_fixation`` adds every earlier step (target 0).

    Rates in Hz, durations and ``dt`` in ms (multiples of dt), ``sigma`` per √ms.

    Examples:
        >>> import jax
        >>> from diffbrain import tasks
        >>> task = tasks.ContextDecisionMaking(encoding="rate")
        >>> batch = task.sample(jax.random.key(0), 8)
        >>> batch.inputs.shape, task.n_outputs
        ((1450, 8, 175), 3)

    ??? cite "Reference"
        Mante, V., Sussillo, D., Shenoy, K. V. & Newsome, W. T. (2013). Context-dependent computation by
        recurrent dynamics in prefrontal cortex. Nature 503, 78–84.
    """

    dt: float = eqx.field(default=1.0, static=True, converter=as_ms)
    fixation_duration: float = eqx.field(default=300.0, static=True, converter=as_ms)
    stimulus_duration: float = eqx.field(default=750.0, static=True, converter=as_ms)
    delay_duration: float = eqx.field(default=300.0, static=True, converter=as_ms)
    decision_duration: float = eqx.field(default=100.0, static=True, converter=as_ms)
    coherences: tuple[float, ...] = eqx.field(default=(0.05, 0.15, 0.5), static=True, converter=as_tuple)
    sigma: float = 0.5
    stimulus_rate: float = 40.0
    context_rate: float = 40.0
    fixation_rate: float = 40.0
    supervise_fixation: bool = eqx.field(default=False, static=True, converter=as_bool)
    channels_per_group: int = eqx.field(default=25, static=True, converter=as_count)
    encoding: str = eqx.field(default="poisson", static=True)

    def _check(self, owner: str) -> None:
        check_fractions(owner, "coherences", self.coherences)
        for name in ("stimulus_duration", "decision_duration"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{owner}: `{name}` must be > 0 ms, got {getattr(self, name)}.")

    @property
    def interval_fields(self) -> dict[str, tuple[float, float]]:
        return {"sigma": (0.0, float("inf"))}

    @property
    def positive_fields(self) -> dict[str, str]:
        return {
            "stimulus_rate": "the stimuli carry the answer",
            "context_rate": "the context cue selects the answer",
        }

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
        return ("supervise_fixation",)

    @property
    def rate_fields(self) -> tuple[str, ...]:
        return ("stimulus_rate", "context_rate", "fixation_rate")

    @property
    def n_groups(self) -> int:
        return 7

    @property
    def n_outputs(self) -> int:
        return 3

    def _trial(
        self, key: PRNGKeyArray, batch_size: int
    ) -> tuple[Float[Array, "T B 7"], Int[Array, "T B"], Bool[Array, "T B"], Int[Array, " B"]]:
        stimulus = self.periods["stimulus"]
        noise_shape = (2, stimulus.stop - stimulus.start, batch_size, 2)  # modality, time, batch, side
        context_u, side_u, coherence_u, noise_u = uniforms(
            key, (batch_size,), (2, batch_size), (2, batch_size), noise_shape
        )
        context = context_u < 0.5  # True: report color
        sides = (side_u < 0.5).astype(jnp.int32)  # motion, color
        coherence = jnp.asarray(self.coherences, jnp.float32)[choice(coherence_u, len(self.coherences))]
        labels = 1 + jnp.where(context, sides[1], sides[0])

        motion = noisy_evidence(noise_u[0], sides[0], coherence[0], self.sigma, self.dt)
        color = noisy_evidence(noise_u[1], sides[1], coherence[1], self.sigma, self.dt)
        evidence = jnp.zeros((self.n_steps, batch_size, 4), jnp.float32)
        evidence = evidence.at[stimulus].set(jnp.concatenate([motion, color], axis=-1))

        decision = self.response_window()
        cue = jnp.broadcast_to(jax.nn.one_hot(context.astype(jnp.int32), 2), (self.n_steps, batch_size, 2))
        fixation = jnp.broadcast_to(jnp.asarray(~decision)[:, None, None], (self.n_steps, batch_size, 1))
        rates = jnp.concatenate(
            [self.fixation_rate * fixation, self.context_rate * cue, self.stimulus_rate * evidence], axis=-1
        )
        targets, mask = decision_targets(decision, labels, ~decision if self.supervise_fixation else None)
        return rates, targets, mask, labels
