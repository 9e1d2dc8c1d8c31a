"""`diffbrain reproduce --out`: which folders a run may replace (never a report.md or a figure it did not
write), one run per folder, the default folders.

The sections are stubs that finish at once, so these tests check the folder handling, not the science
(tests/test_reproduce.py runs the real sections on the TINY budget).
"""

import errno
import fcntl
import json
import re

import pytest
from typer.testing import CliRunner

from diffbrain import reproduce
from diffbrain.cli import app


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
            (folder / f"{name}.png").write_bytes(b"placeholder")
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
            lambda file: file.write(f"{reproduce.REPORT_HEADING}\n\nnew: {sorted(sections)}\n"),
        ),
    )
    return ran, failing


def _invoke(*args: str):
    return CliRunner().invoke(app, ["reproduce", *args], env={"COLUMNS": "300"})


def _flat(output: str) -> str:
    """The output without the error box's frame and without spaces (the console wraps inside paths)."""
    return "".join(re.sub(r"[│╭╮╰╯─]", "", output).split())


def _source_package(folder):
    """A folder like the checkout's source packages fit/, learn/, bench/: Python files, no result.json."""
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text('"""A source package."""\n')
    (folder / "fitter.py").write_text("x = 1\n")


def test_a_section_folder_reproduce_did_not_write_is_refused_before_any_work(tmp_path, stub_sections):
    """Review: `diffbrain reproduce --out .` in the checkout root replaced (deleted) the source packages
    fit/, learn/ and bench/ with section folders."""
    for name in ("fit", "learn", "bench"):
        _source_package(tmp_path / name)
    with pytest.raises(reproduce.OutputFolderError, match="choose another output folder") as refused:
        reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert str(tmp_path / "fit") in str(refused.value) and "__init__.py" in str(refused.value)
    assert stub_sections[0] == []
    for name in ("fit", "learn", "bench"):
        assert sorted(path.name for path in (tmp_path / name).iterdir()) == ["__init__.py", "fitter.py"]
    assert not (tmp_path / "network").exists() and not (tmp_path / reproduce.REPORT).exists()


def test_the_command_names_the_foreign_folder_and_tells_to_pick_another_out(tmp_path, stub_sections):
    _source_package(tmp_path / "learn")
    result = _invoke("--quick", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "Invalidvaluefor'--out'" in text and "".join(str(tmp_path / "learn").split()) in text
    assert "chooseanotheroutputfolder" in text and "expectedduration" not in text  # refused before starting
    assert stub_sections[0] == [] and (tmp_path / "learn" / "fitter.py").read_text() == "x = 1\n"


def test_a_file_in_place_of_a_section_folder_is_refused(tmp_path, stub_sections):
    (tmp_path / "bench").write_text("my notes\n")
    with pytest.raises(reproduce.OutputFolderError, match="is a file"):
        reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert (tmp_path / "bench").read_text() == "my notes\n" and stub_sections[0] == []


def test_folders_reproduce_wrote_or_empty_ones_are_replaced(tmp_path, stub_sections):
    """Its own: an empty folder, a result.json of that section (another configuration), or only what a
    section writes (result.json, even damaged, figures, a temporary file of an interrupted write)."""
    (tmp_path / "fit").mkdir()
    (tmp_path / "network").mkdir()
    (tmp_path / "network" / reproduce.RESULT).write_text(json.dumps({"section": "network", "key": "old"}))
    (tmp_path / "network" / "notes.txt").write_text("kept with its section's result.json\n")
    (tmp_path / "learn").mkdir()
    (tmp_path / "learn" / reproduce.RESULT).write_text('{"section": "le')  # cut off mid-write
    (tmp_path / "learn" / "accuracy.png").write_bytes(b"old")
    (tmp_path / "learn" / ".weights.png.0123abcd.tmp").write_bytes(b"")
    with pytest.warns(UserWarning, match="unreadable"):
        reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert stub_sections[0] == list(reproduce.SECTIONS)
    for name in reproduce.SECTIONS:
        assert reproduce.load_section(tmp_path, name)["section"] == name


def test_an_empty_out_is_refused(tmp_path, stub_sections, monkeypatch):
    """Review: `--out ""` was taken as the current folder."""
    monkeypatch.chdir(tmp_path)
    result = _invoke("--quick", "--out", "")
    assert result.exit_code == 2, result.output
    assert "Invalidvaluefor'--out'" in _flat(result.output) and "empty" in result.output
    assert stub_sections[0] == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="empty"):
        reproduce.run("", reproduce.TINY, log=lambda line: None)


def test_quick_writes_into_reproduce_quick_by_default(tmp_path, stub_sections, monkeypatch):
    """Review: `diffbrain reproduce` (29 min) then `diffbrain reproduce --quick` wrote into the same default
    folder, the quick run replacing every finished full section."""
    monkeypatch.chdir(tmp_path)
    result = _invoke("--quick")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reproduce-quick" / reproduce.REPORT).is_file()
    assert not (tmp_path / "reproduce").exists()
    assert "into reproduce-quick" in result.output


def test_replacing_a_section_of_another_configuration_says_what_and_why(tmp_path):
    """Review: a run with another budget replaced the finished sections of the first without a word."""
    lines = []
    first = reproduce.BenchConfig(steps=(20, 40))
    reproduce.run_section(tmp_path, "bench", first, lambda *_: {"value": 1}, log=lines.append)
    assert not any("replac" in line for line in lines)
    lines.clear()
    other = reproduce.BenchConfig(steps=(20, 30), repeats=5)
    reproduce.run_section(tmp_path, "bench", other, lambda *_: {"value": 2}, log=lines.append)
    replaced = [line for line in lines if "replac" in line]
    assert len(replaced) == 1, lines
    assert f"bench: replacing {tmp_path / 'bench'}" in replaced[0]
    assert "steps [20, 40] → [20, 30]" in replaced[0] and "repeats 3 → 5" in replaced[0]
    assert lines.index(replaced[0]) == 0  # said before it runs


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(
    tmp_path, stub_sections, monkeypatch
):
    """Review: two runs into one --out deleted each other's unfinished section folders (the second's tidying
    removed the first's .fit.partial-*), and the first failed with a raw FileNotFoundError."""
    (tmp_path / ".fit.partial-0123abcd").mkdir()  # the first run's section in progress
    with open(tmp_path / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first run, in another process
        result = _invoke("--quick", "--out", str(tmp_path))
        with monkeypatch.context() as patch:  # the lock taken between the check and the run
            patch.setattr(reproduce, "check_output_folder", lambda out: None)
            with pytest.raises(reproduce.OutputFolderError, match="another diffbrain reproduce is writing"):
                reproduce.run(tmp_path, reproduce.TINY, log=lambda line: None)
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "Invalidvaluefor'--out'" in text and "anotherdiffbrainreproduceiswritinginto" in text
    assert "expectedduration" not in text  # refused before the run announces itself
    assert "".join(str(tmp_path).split()) in text
    assert stub_sections[0] == [] and (tmp_path / ".fit.partial-0123abcd").is_dir()
    # once the first run let go, a run goes ahead
    assert _invoke("--quick", "--out", str(tmp_path)).exit_code == 0
    assert stub_sections[0] == list(reproduce.SECTIONS)


def test_a_file_lost_under_out_is_a_write_error_not_missing_data(tmp_path, stub_sections, monkeypatch):
    """Review: a FileNotFoundError for a file under --out was shown as if it were the data-missing message."""
    lost = tmp_path / ".fit.partial-0123abcd" / ".fit_gif-adapting.png.faf10d4a.tmp"

    def section(config, folder, work, **kwargs):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(lost))

    monkeypatch.setitem(reproduce.COMPUTE, "fit", section)
    result = _invoke("--quick", "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "".join(f"cannot write under {tmp_path}: No such file or directory ({lost})".split()) in _flat(
        result.output
    )


def test_a_section_folder_that_cannot_be_read_is_named(tmp_path, stub_sections, monkeypatch):
    def unreadable(out):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "fit"))

    monkeypatch.setattr(reproduce, "check_output_folder", unreadable)
    result = _invoke("--quick", "--out", str(tmp_path))
    assert result.exit_code == 2, result.output
    text = _flat(result.output)
    assert "".join(f"cannot read under {tmp_path}: Permission denied ({tmp_path / 'fit'})".split()) in text
    assert "Traceback" not in result.output and stub_sections[0] == []


# --- a report.md or figures reproduce did not write are never replaced or deleted ---------------------------
# Review: a folder holding only the user's own report.md ran, logged "report.md set aside as report.md.stale"
# and ended with the user's file deleted; OUT/network holding only the user's PNG figure was taken for a
# section folder (any *.png counted as reproduce's) and replaced.

OWN_REPORT = f"{reproduce.REPORT_HEADING}\n\nold numbers\n"
USER_REPORT = "# My project report\n\nhand-written notes\n"


def _names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


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
    result = _invoke("--quick", "--out", str(out))
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
    assert report.path.read_text().startswith(f"{reproduce.REPORT_HEADING}\n\nnew:")
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
