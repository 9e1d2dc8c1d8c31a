"""`python -m diffbrain.bench.network_gradient`: weight gradients through lax.scan and event_scan."""

import re

from diffbrain.bench import network_gradient


def test_prints_each_calls_time_memory_and_that_the_gradients_agree(shared_data, capsys):
    folder = str(shared_data / "conn-potjans-diesmann2014")
    options = ["--scale", "0.01", "--duration", "3", "--checkpoint", "7", "--repeats", "1"]
    network_gradient.main(["--data", folder, *options])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("microcircuit: ")
    pattern = r"(.+): ([\d.]+) s \(([\d.]+)× forward\), XLA temporaries (\d+) MiB(?:, .* lax.scan's (\S+))?"
    timed = [re.fullmatch(pattern, line) for line in lines[1:]]
    assert [m.group(1) for m in timed] == [
        "forward",
        "grad, lax.scan",
        "grad, event_scan",
        "grad, event_scan, checkpoint=7",
    ]
    assert all(float(m.group(5)) < 1e-4 for m in timed[2:])  # the same gradient (float32)
    assert int(timed[3].group(4)) <= int(timed[2].group(4))  # checkpointed: fewer stored states
