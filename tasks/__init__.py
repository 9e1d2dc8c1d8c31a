"""Cognitive tasks as key-seeded, jittable batch generators.

Every task is an `eqx.Module` with ``n_inputs``, ``n_outputs``, ``n_steps`` and ``sample(key, batch_size)``,
which returns a time-major `Batch` ``(inputs [T, B, n_in], targets [T, B], mask [T, B], labels [B])``:
inputs as Poisson spikes or spike probabilities per step (``encoding="poisson" | "rate"``), int32 class
targets, a bool loss mask (by default the response period) and each trial's answer as the class its
response period asks for. Accuracy is the argmax of the readout summed over the response steps (the masked
steps whose target is the label; ``supervise_fixation`` adds the fixation steps to the mask, not to the
response) against ``labels``, as `diffbrain.learn` computes it.
"""

from ._base import AbstractTask as AbstractTask
from ._base import Batch as Batch
from .context_decision import ContextDecisionMaking as ContextDecisionMaking
from .decision_making import PerceptualDecisionMaking as PerceptualDecisionMaking
from .delayed_match import DelayedMatchToSample as DelayedMatchToSample
from .evidence_accumulation import EvidenceAccumulation as EvidenceAccumulation
