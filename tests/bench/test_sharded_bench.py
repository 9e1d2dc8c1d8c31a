"""`python -m diffbrain.bench.sharded`: the one-device and sharded microcircuit runs, timed side by side."""

import re

from diffbrain.bench import sharded


def test_prints_each_runs_time_and_the_same_rates(shared_data, capsys):
    sharded.main(
        [
            "--data",
            str(shared_data / "conn-potjans-diesmann2014"),
            "--scale",
            "0.01",
            "--duration",
            "5",
            "--repeats",
            "1",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("microcircuit: ")
    timed = [re.match(r"(.+): ([\d.]+) s \(median of 1\); rates (.+) Hz", line) for line in lines[1:]]
    assert [m.group(1) for m in timed] == [
        "Network.simulate",
        "simulate_network_sharded, 1 device",
        "simulate_network_sharded, 4 devices",
    ]
    assert len({m.group(3) for m in timed}) == 1  # the same simulation
