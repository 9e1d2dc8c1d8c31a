"""CLI option errors: --seed limited to the 32 bits that reach the key, and network errors in the options'
terms (a --dt that does not divide the default duration, a --scale too small)."""

import re

import pytest
import typer
from typer.testing import CliRunner

from diffbrain.cli import app, check_seed

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["simulate", *args], env={"COLUMNS": "200"})
    return result.exit_code, " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())


@pytest.mark.parametrize("seed", [2**32, -1, -(2**32 - 1), 2**63 - 1])
def test_seeds_beyond_32_bits_are_refused(seed):
    """Review: --seed 4294967296 ran the same network as --seed 0 (jax.random.key keeps the low 32 bits)."""
    with pytest.raises(typer.BadParameter, match="must lie in 0 … 2³² − 1") as error:
        check_seed(seed)
    assert error.value.param_hint == "'--seed'"
    code, text = _run("cuba", "--scale", "0.1", "--duration", "1", "--seed", str(seed))
    assert code == 2 and "'--seed': must lie in 0 … 2³² − 1 = 4294967295" in text, text


def test_every_32_bit_seed_still_runs():
    check_seed(0)
    check_seed(2**32 - 1)
    code, text = _run("cuba", "--scale", "0.02", "--duration", "1", "--seed", str(2**32 - 1))
    assert code == 0 and "seed 4294967295" in text, text


def test_a_dt_that_does_not_divide_the_default_duration_is_blamed_on_dt():
    """Review: ``simulate cuba --dt 0.3`` blamed --duration, which was not given."""
    code, text = _run("cuba", "--dt", "0.3", "--scale", "0.1")
    assert code == 2, text
    assert (
        "'--dt': cuba runs for 1000 ms unless --duration says otherwise, and 0.3 ms does not divide it"
        in text
    )
    code, text = _run("cuba", "--dt", "0.3", "--duration", "1000", "--scale", "0.1")
    assert code == 2 and "'--duration': 1000 ms is not a multiple of dt = 0.3 ms" in text, text


def test_a_small_scale_states_the_smallest_scale():
    """Review: ``--scale 0.01`` was refused in terms of the Python arguments `n` and `in_degree`."""
    code, text = _run("coba", "--scale", "0.01", "--duration", "1")
    assert code == 2, text
    assert (
        "'--scale': 0.01 gives 40 neurons, too few for the coba network's 80 distinct inputs per neuron (64 "
        "excitatory, 16 inhibitory): pass --scale ≥ 0.02 (80 neurons)." in text
    )
    assert "`n`" not in text and "in_degree" not in text
    code, text = _run("cuba", "--scale", "0.02", "--duration", "1")
    assert code == 0 and "80 neurons" in text, text


def test_a_small_multiarea_scale_states_the_smallest_scale(shared_data):
    folder = shared_data / "conn-macaque-markov2014-29areas"
    code, text = _run("multiarea", "--scale", "0.001", "--duration", "1", "--data", str(folder))
    assert code == 2, text
    assert "'--scale': 0.001 gives 2 neurons per area; an area needs at least 3" in text
    assert "pass --scale ≥ 0.0015" in text and "n_per_area" not in text
