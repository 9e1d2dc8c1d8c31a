"""`diffbrain reproduce --out` never replaces or deletes a report.md or a figure it did not write.

Review: a folder holding only the user's own report.md ran, logged "report.md set aside as report.md.stale"
and ended with the user's file deleted; OUT/network holding only the user's PNG figure was taken for a
section folder (any *.png counted as reproduce's) and replaced. The sections are stubs that finish at once.
"""

import re

import pytest
from typer.testing import CliRunner

from diffbrain import reproduce
from diffbrain.cli import app

HEADING = "# diffbrain reproduce"  # the first line of the reports reproduce writes
OWN_REPORT = f"{HEADING}\n\nold numbers\n"
USER_REPORT = "# My project report\n\nhand-written notes\n"


@pytest.fixture
def stub_sections(monkeypatch):
    """Sections that finish at once (each run's names appended to the returned list; ``fail`` names one
    that raises), no connectome data needed, and a report.md as reproduce heads it."""
    ran = []
    failing = set()

    def compute(name):
        def section(config, folder, work, **kwargs):
            if name in failing:
                raise RuntimeError(f"{name} failed")
            ran.append(name)
            return {}

        return section

    for name in reproduce.SECTIONS:
        monkeypatch.setitem(reproduce.COMPUTE, name, compute(name))
        monkeypatch.setitem(reproduce.ROWS, name, lambda results: [])
    monkeypatch.setattr(reproduce, "connectome_folder", lambda: None)
    monkeypatch.setattr(
        reproduce,
        "write_report",
        lambda out, budget, sections, *_: reproduce.write_atomically(
            out / reproduce.REPORT,
            lambda file: file.write(f"{HEADING}\n\nnew: {sorted(sections)}\n"),
        ),
    )
    return ran, failing


def _names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _flat(output: str) -> str:
    """The output without the error box's frame and without spaces (the console wraps inside paths)."""
    return "".join(re.sub(r"[│╭╮╰╯─]", "", output).split())


def test_a_report_md_reproduce_did_not_write_is_refused_before_anything_is_written(tmp_path, stub_sections):
    (tmp_path / reproduce.REPORT).write_text(USER_REPORT)
    with pytest.raises(reproduce.OutputFolderError, match="not a report reproduce wrote") as refused:
        reproduce.check_output_folder(tmp_path)
    assert str(tmp_path / reproduce.REPORT) in str(refused.value)
    with pytest.raises(reproduce.OutputFolderError, match="choose another output folder"):
        reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert stub_sections[0] == [] and _names(tmp_path) == [reproduce.REPORT]
    assert (tmp_path / reproduce.REPORT).read_text() == USER_REPORT


def test_the_command_refuses_the_users_report_md_and_keeps_it(tmp_path, stub_sections):
    out = tmp_path / "myproject"
    out.mkdir()
    (out / reproduce.REPORT).write_text(USER_REPORT)
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "Invalidvaluefor'--out'" in text and "notareportreproducewrote" in text
    assert "setaside" not in text and stub_sections[0] == []
    assert _names(out) == [reproduce.REPORT] and (out / reproduce.REPORT).read_text() == USER_REPORT


def test_a_report_md_stale_reproduce_did_not_write_is_refused(tmp_path, stub_sections):
    """A run replaces report.md.stale with the report it sets aside, and deletes it at its end."""
    (tmp_path / reproduce.REPORT).write_text(OWN_REPORT)
    (tmp_path / reproduce.STALE_REPORT).write_bytes(b"\x89PNG binary notes")
    with pytest.raises(
        reproduce.OutputFolderError, match=re.escape(f"{reproduce.STALE_REPORT} does not begin with")
    ):
        reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert (tmp_path / reproduce.STALE_REPORT).read_bytes() == b"\x89PNG binary notes"
    assert (tmp_path / reproduce.REPORT).read_text() == OWN_REPORT and stub_sections[0] == []


def test_reproduces_own_report_is_still_set_aside_while_sections_are_recomputed(tmp_path, stub_sections):
    ran, failing = stub_sections
    (tmp_path / reproduce.REPORT).write_text(OWN_REPORT)
    failing.add("network")
    lines = []
    with pytest.raises(RuntimeError, match="network failed"):
        reproduce.run(tmp_path, reproduce.TINY, log=lines.append)
    assert not (tmp_path / reproduce.REPORT).exists()
    assert (tmp_path / reproduce.STALE_REPORT).read_text() == OWN_REPORT
    assert any("report.md set aside as report.md.stale" in line for line in lines)

    failing.clear()  # the stale report is reproduce's too: the rerun is not refused, and removes it
    report = reproduce.run(tmp_path, reproduce.TINY, log=lines.append)
    assert report.path.read_text().startswith(f"{HEADING}\n\nnew:")
    assert not (tmp_path / reproduce.STALE_REPORT).exists() and ran == list(reproduce.SECTIONS)  # fit reused


def test_a_section_folder_of_the_users_own_figures_is_refused(tmp_path, stub_sections):
    figure = tmp_path / "my analysis" / "network" / "my_connectome_figure.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"\x89PNG\r\n\x1a\nuser's figure")
    with pytest.raises(reproduce.OutputFolderError, match=re.escape(figure.name)):
        reproduce.check_output_folder(figure.parent.parent)
    with pytest.raises(reproduce.OutputFolderError, match="not a folder reproduce wrote"):
        reproduce.run(figure.parent.parent, reproduce.TINY, log=lambda line: None)
    assert figure.read_bytes() == b"\x89PNG\r\n\x1a\nuser's figure" and stub_sections[0] == []
    assert _names(figure.parent.parent) == ["network"] and _names(figure.parent) == [figure.name]


def test_another_sections_figure_is_not_reproduces_in_this_section(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "raster.png").write_bytes(b"network's name, not bench's")
    with pytest.raises(reproduce.OutputFolderError, match=re.escape("raster.png")):
        reproduce.check_output_folder(tmp_path)


def test_folders_of_only_the_figures_their_section_draws_are_replaced(tmp_path, stub_sections):
    """What an interrupted section leaves: its own figures by name (fit's one per problem)."""
    for name, figures in {
        "fit": ["fit_gif-adapting.png", "fit_hh-noise.png"],
        "network": ["raster.png", "rate_propagation.png"],
        "learn": ["accuracy.png", "weights.png"],
        "bench": ["learning_cost.png"],
    }.items():
        (tmp_path / name).mkdir()
        for figure in figures:
            (tmp_path / name / figure).write_bytes(b"old")
    reproduce.check_output_folder(tmp_path)
    reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert stub_sections[0] == list(reproduce.SECTIONS)
    for name in reproduce.SECTIONS:
        assert reproduce.load_section(tmp_path, name)["section"] == name
