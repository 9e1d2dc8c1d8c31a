"""braintrace's ES-D-RTRL on diffbrain's E/I network, run in a subprocess by `bench.learn_braintrace`.

    PYTHON learn_peers.py SPEC.json OUT.json

``PYTHON`` is an interpreter with braintrace (and brainstate, brainpy.state, brainunit, braintools) installed;
this script never imports diffbrain, so it runs in any environment. ``SPEC.json`` names the network file
(``.npz`` written by `learn_braintrace.export`: the effective weight magnitudes, the neuron, synapse and
readout parameters, and one input batch per sequence length), the sequence lengths ``steps``, ``repeats`` and
the trace decay ``decay`` and the ``modes`` of batching: ``"batched"`` (states with a batch axis,
``braintrace.compile(..., batch_size=B)``) and/or ``"vmap"`` (``vmap=True``: an `ETraceVmap` over unbatched
learners; the same gradients). ``OUT.json`` receives::

    {"status": "ok", "versions": {...}, "runs": [
        {"T": 100, "mode": "batched", "compile_s": 6.1, "run_s": [0.07, 0.07, 0.07], "rate_hz": 12.3,
         "loss": 0.69}]}

or ``{"status": "skipped", "reason": "..."}`` when braintrace is not installed or fails (never a made-up
number). Per sequence length: two untimed calls of the jitted gradient step (brainstate's ``jit`` compiles
on the first call and again on the second; ``compile_s`` is their time minus two timed runs), then
``repeats`` timed calls, each from the network's resting state and waited for with
`jax.block_until_ready`. ``rate_hz`` is the recurrent neurons' mean rate in the last timed call.

The network, in brainpy.state, is diffbrain's `EINetwork` as closely as braintrace trains it:

* neurons: ``brainpy.state.ALIF`` — τ = 20 ms, soft reset by V_th − V_reset, with diffbrain's per-neuron
  τ_a and β, but its adaptation raises the threshold (``V_th + β·a``) where diffbrain's ALIF adaptation is
  a hyperpolarising current; the spike is read from V at the start of the next step, not at the end of
  this one; voltages shifted by −V_rest (rest 0, threshold 20 mV);
* synapses: two ``AlignPostProj`` with ``Expon`` (τ_syn) and ``COBA`` outputs (E_exc, E_inh shifted by
  −V_rest), conductances in mS with R = 1 kΩ, so ``R·g`` is diffbrain's dimensionless conductance;
* weights: ``braintrace.nn.SignedWLinear`` (``|W|``, Dale's law by magnitudes as in diffbrain, whose
  ``softplus`` parameterisation changes the gradient's scale, not its cost); one projection for the input
  and excitatory neurons, one for the inhibitory ones; the initial magnitudes are diffbrain's, element by
  element (masked entries are zero but trained, as everywhere in a dense braintrace layer);
* readout: ``braintrace.nn.LeakyRateReadout`` (τ_out, no bias; diffbrain filters the spikes and has a bias);
* surrogate: ``braintools.surrogate.ReluGrad`` with diffbrain's gain and width;
* loss: softmax cross-entropy of the readout on the masked (last 10 %) steps, mean over steps and trials.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import sys
import time
import traceback

import numpy as np

PACKAGES = ("braintrace", "brainstate", "brainpy", "brainunit", "braintools", "jax")
"""The distributions whose versions the braintrace records name."""


class Skip(Exception):
    """braintrace cannot run here; the message says why."""


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def build(net: dict, batch_size: int, vmap: bool = False):
    """The brainpy.state network of the exported arrays ``net`` and the functions that train it."""
    try:
        import brainpy.state as bp
        import brainstate
        import braintools
        import braintrace
        import brainunit as u
        import jax.numpy as jnp
    except ImportError as error:
        raise Skip(f"braintrace cannot be imported in {sys.executable} ({error})") from None

    brainstate.environ.set(dt=float(net["dt"]) * u.ms)
    n_in, n_rec = net["w_in"].shape
    n_exc = int(net["n_exc"])
    V_rest = float(net["V_rest"])  # every voltage is shifted by -V_rest: brainpy's ALIF rests at 0 mV
    gain, width = float(net["surrogate_gain"]), float(net["surrogate_width"])
    V_th, V_reset = float(net["V_th"]) - V_rest, float(net["V_reset"]) - V_rest

    class EINet(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.neurons = bp.ALIF(
                n_rec,
                R=1.0 * u.kohm,
                tau=net["tau"] * u.ms,
                tau_a=net["tau_a"] * u.ms,
                beta=net["beta"] * u.mV,
                V_th=V_th * u.mV,
                V_reset=V_reset * u.mV,
                V_rest=0.0 * u.mV,
                spk_fun=braintools.surrogate.ReluGrad(alpha=gain, width=width / (V_th - V_reset)),
                spk_reset="soft",
            )
            w_e = np.concatenate([net["w_in"], net["w_rec"][:n_exc]])
            self.exc = self.projection(
                braintrace.nn.SignedWLinear(n_in + n_exc, n_rec, w_init=w_e * u.mS), "E_exc"
            )
            w_i = net["w_rec"][n_exc:]
            self.inh = self.projection(
                braintrace.nn.SignedWLinear(n_rec - n_exc, n_rec, w_init=w_i * u.mS), "E_inh"
            )
            self.readout = braintrace.nn.LeakyRateReadout(
                n_rec, net["w_out"].shape[1], tau=float(net["tau_out"]) * u.ms, w_init=net["w_out"]
            )

        def projection(self, comm, reversal):
            return bp.AlignPostProj(
                comm=comm,
                syn=bp.Expon.desc(n_rec, tau=float(net["tau_syn"]) * u.ms),
                out=bp.COBA.desc(E=(float(net[reversal]) - V_rest) * u.mV),
                post=self.neurons,
            )

        def update(self, x):
            spikes = self.neurons.get_spike()
            self.exc(jnp.concatenate([x, spikes[..., :n_exc]], axis=-1))
            self.inh(spikes[..., n_exc:])
            return self.readout(self.neurons())

    model = EINet()
    example = jnp.zeros((batch_size, n_in), jnp.float32)
    learner = braintrace.compile(
        model,
        braintrace.ES_D_RTRL,
        example,
        batch_size=batch_size,
        vmap=vmap,
        decay_or_rank=float(net["decay"]),
    )

    def step_loss(x, label):
        readout = learner(x)
        loss = braintools.metric.softmax_cross_entropy_with_integer_labels(readout, label).mean()
        return loss, model.neurons.get_spike().mean()  # a model output would be traced as a hidden state

    @brainstate.transform.jit
    def gradient_step(inputs, labels, mask):
        learner.reset_state(batch_size=batch_size)
        return learner.etrace_grad(
            inputs,
            labels,
            step_fn=step_loss,
            mask=mask,
            has_aux=True,
            return_value=True,
            loss_output="scalar",
        )

    return gradient_step


def measure(spec: dict, net: dict) -> list[dict]:
    import jax
    import jax.numpy as jnp

    runs = []
    for n_steps, mode in itertools.product(spec["steps"], spec.get("modes", ["batched"])):
        inputs = jnp.asarray(net[f"inputs_{n_steps}"], jnp.float32)
        labels = jnp.broadcast_to(jnp.asarray(net[f"labels_{n_steps}"]), inputs.shape[:2])
        mask = jnp.asarray(net[f"mask_{n_steps}"], jnp.float32)
        if mode not in ("batched", "vmap"):
            raise ValueError(f"unknown mode {mode!r}: 'batched' or 'vmap'")
        gradient_step = build(net, inputs.shape[1], vmap=mode == "vmap")

        def call(gradient_step=gradient_step, args=(inputs, labels, mask)):
            start = time.perf_counter()
            out = jax.block_until_ready(gradient_step(*args))
            return time.perf_counter() - start, out

        warm_s = call()[0] + call()[0]
        timed = [call() for _ in range(spec["repeats"])]
        run_s = [seconds for seconds, _ in timed]
        _, loss, rate = timed[-1][1]
        runs.append(
            {
                "T": n_steps,
                "mode": mode,
                "compile_s": max(warm_s - 2 * float(np.median(run_s)), 0.0),
                "run_s": run_s,
                "rate_hz": float(jnp.mean(rate)) / float(net["dt"]) * 1000.0,
                "loss": float(loss),
            }
        )
    return runs


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path) as file:
        spec = json.load(file)
    try:
        with np.load(spec["network"]) as data:
            net = {key: data[key] for key in data.files}
        net["decay"] = spec["decay"]
        out = {"status": "ok", "versions": versions(), "runs": measure(spec, net)}
    except Skip as reason:
        out = {"status": "skipped", "reason": str(reason), "versions": versions()}
    except Exception as error:  # a peer that fails is reported with its error, not fatal to the suite
        lines = traceback.format_exception_only(error)
        out = {
            "status": "skipped",
            "reason": f"braintrace failed: {''.join(lines).strip()[:400]}",
            "versions": versions(),
        }
    with open(out_path, "w") as file:
        json.dump(out, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
