"""Write ``neurogym_trials.npz``: NeuroGym's observations and ground truth for a few noiseless trials.

`tests/tasks/test_neurogym.py` compares diffbrain's tasks with these trials without importing NeuroGym.
Rerun (NeuroGym is no dependency of diffbrain; any throwaway environment will do):

    python3.11 -m venv /tmp/venv-neurogym
    /tmp/venv-neurogym/bin/pip install neurogym torch  # NeuroGym 2.3.1 imports torch on import
    /tmp/venv-neurogym/bin/python tests/tasks/data/make_neurogym_fixtures.py

Every trial is built at dt = 10 ms with sigma = 0 and the timing of diffbrain's defaults (the test checks
that the timing stored here is still ours), with chosen trial variables so that both sides, both contexts
and several coherences appear. Keys in the file: ``<task>_ob [n, T, n_ob]``, ``<task>_gt [n, T]``,
``<task>_periods``/``<task>_durations`` (ms) and one ``<task>_<variable> [n]`` per trial variable;
``neurogym_version``.
"""

import warnings
from pathlib import Path

import neurogym
import numpy as np

DT = 10
TASKS = {
    "pdm": (
        "PerceptualDecisionMaking-v0",
        {},
        {"fixation": 100, "stimulus": 1000, "delay": 0, "decision": 100},
        # ground_truth: NeuroGym's choice index (0 first/left, 1 second/right); coh in %
        [{"ground_truth": 0, "coh": 51.2}, {"ground_truth": 1, "coh": 12.8}, {"ground_truth": 1, "coh": 0.0}],
    ),
    "dms": (
        "DelayMatchSample-v0",
        {},
        {"fixation": 300, "sample": 500, "delay": 1000, "test": 500, "decision": 900},
        # ground_truth: 1 match, 2 non-match; sample: index into the env's stimulus angles
        [
            {"ground_truth": 1, "sample": 0},
            {"ground_truth": 2, "sample": 1},
            {"ground_truth": 2, "sample": 0},
        ],
    ),
    "cdm": (
        "ContextDecisionMaking-v0",
        {"use_expl_context": True},
        {"fixation": 300, "stimulus": 750, "delay": 300, "decision": 100},
        # context 0: report modality 1, 1: modality 2; ground_truth the reported choice (1, 2), other_choice
        # the other modality's; coh_1, coh_2 the coherences (%) of modalities 1 and 2
        [
            {"ground_truth": 1, "other_choice": 2, "context": 0, "coh_1": 50, "coh_2": 5},
            {"ground_truth": 2, "other_choice": 2, "context": 1, "coh_1": 15, "coh_2": 50},
            {"ground_truth": 1, "other_choice": 1, "context": 1, "coh_1": 5, "coh_2": 15},
        ],
    ),
}


def main() -> None:
    out = {"neurogym_version": np.array(neurogym.__version__)}
    for prefix, (name, kwargs, timing, trials) in TASKS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = neurogym.make(name, dt=DT, sigma=0.0, timing=timing, **kwargs).unwrapped
        obs, gts = [], []
        for variables in trials:
            given = dict(variables)
            if "sample" in given:
                given["sample_theta"] = env.theta[given.pop("sample")]
            env.new_trial(**given)
            obs.append(np.asarray(env.ob, np.float32))
            gts.append(np.asarray(env.gt, np.int8))
        out[f"{prefix}_ob"], out[f"{prefix}_gt"] = np.stack(obs), np.stack(gts)
        out[f"{prefix}_periods"] = np.array(list(timing))
        out[f"{prefix}_durations"] = np.array(list(timing.values()), np.float64)
        for key in trials[0]:
            out[f"{prefix}_{key}"] = np.array([t[key] for t in trials])
    path = Path(__file__).with_name("neurogym_trials.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path} ({path.stat().st_size} bytes) with NeuroGym {neurogym.__version__}")


if __name__ == "__main__":
    main()
