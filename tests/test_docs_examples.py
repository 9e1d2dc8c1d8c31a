"""The python examples of the user-facing docs run, in order, and print what they claim.

Each file's ```python blocks run one after another in one namespace, as a reader pasting them would, in a
Python process apart from the tests' (`Worker`): float32 by default, one CPU device (none of the test
session's float64 or fake devices), a temporary working directory (examples write checkpoints and
reports), and ``$DIFFBRAIN_DATA`` set to the shared data folder. HTML comments, which readers do not see,
steer the run:

* ``<!-- docs-test: skip (reason) -->`` on the line just before a fence leaves out an expensive block; it
  runs with ``--run-slow``. The reason is required.
* ``<!-- docs-test: check`` on the line just after a block's closing fence, up to a line ``-->``, holds
  python code run right after the block in its namespace: the assertions behind the numbers the block's
  comments and prose claim.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from diffbrain import _data

ROOT = Path(__file__).resolve().parents[1]

DOC_FILES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in [ROOT / "README.md", *ROOT.glob("docs/**/*.md")]
    if "```python" in path.read_text(encoding="utf-8")
)
"""Every user-facing markdown file with a python example; a new guide is tested without listing it."""

MARKER = "<!-- docs-test"
SKIP = re.compile(r"<!-- docs-test: skip \((?P<reason>.*\S.*)\) -->")
CHECK = "<!-- docs-test: check"


@dataclasses.dataclass(frozen=True)
class Example:
    """One python block: its first code line (1-based), code, the check run after it, why it is skipped."""

    line: int
    source: str
    check: str = ""
    check_line: int = 0
    skip: str | None = None


def examples(text: str, path: str) -> list[Example]:
    """The python blocks of a markdown text, with their markers; a malformed marker raises ValueError."""
    lines = text.splitlines()
    found, attached, i = [], set(), 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        skip = None
        if i > 0 and lines[i - 1].startswith(MARKER):
            match = SKIP.fullmatch(lines[i - 1].strip())
            if match is None:
                raise ValueError(
                    f"{path}:{i}: write a skip marker as `<!-- docs-test: skip (reason) -->`, with a reason."
                )
            skip = match["reason"]
            attached.add(i - 1)
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{path}:{i + 1}: the python block is not closed.")
        check, check_line = "", 0
        if end + 1 < len(lines) and lines[end + 1].startswith(CHECK):
            close = next((j for j in range(end + 2, len(lines)) if lines[j].strip() == "-->"), None)
            if close is None or lines[end + 1].strip() != CHECK:
                raise ValueError(f"{path}:{end + 2}: a check is `{CHECK}` on its own line, code, then `-->`.")
            check, check_line = "\n".join(lines[end + 2 : close]), end + 3
            attached.add(end + 1)
        found.append(Example(i + 2, "\n".join(lines[i + 1 : end]), check, check_line, skip))
        i = end + 1
    stray = [n + 1 for n, line in enumerate(lines) if line.startswith(MARKER) and n not in attached]
    if stray:
        raise ValueError(f"{path}: docs-test markers on lines {stray} are attached to no python block.")
    return found


WORKER = r"""
import json, os, sys, time, traceback

replies = os.fdopen(int(sys.argv[1]), "w")
for request in sys.stdin:
    cwd, code = json.loads(request)
    os.chdir(cwd)
    if "jax" in sys.modules:  # each file starts as a fresh session would: float32
        sys.modules["jax"].config.update("jax_enable_x64", False)
    namespace, failed = {"__name__": "__main__"}, None
    for path, line, source in code:
        start = time.perf_counter()
        try:
            # Padded so that a traceback gives the line number in the markdown file.
            exec(compile("\n" * (line - 1) + source, path, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            failed = line
            break
        finally:
            sys.stdout.flush()
        print(f"{path}:{line}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    replies.write(json.dumps(failed) + "\n")
    replies.flush()
"""
"""Reads one request per line, ``[cwd, [(path, first line, source), ...]]``: runs the sources in order in a
fresh namespace and replies (on the file descriptor ``argv[1]``) with the first line of the block that
raised, or null; the traceback and each block's time go to stderr."""


class Worker:
    """One Python process that runs the docs' files one after another, each in its own namespace and
    working directory: a file starts as a fresh session would (float32, one CPU device), while the files
    share imports and compiled programs, which halves the run time."""

    def __init__(self, log: Path):
        self.log, self.process = log, None

    def start(self) -> None:
        env = dict(os.environ)
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
        env["XLA_FLAGS"] = flags
        env.pop("JAX_ENABLE_X64", None)
        if _data.shared_data().is_dir():  # $DIFFBRAIN_DATA, else ../shared/data beside the checkout
            env.setdefault("DIFFBRAIN_DATA", str(_data.shared_data()))
        read, write = os.pipe()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(write)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(write,),
                text=True,
            )
        os.close(write)
        self.replies = os.fdopen(read)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.replies.close()
            self.process = None

    def run(self, path: str, blocks: list[Example], cwd: Path, timeout: float = 900.0) -> tuple[bool, str]:
        """Run ``blocks`` and their checks in order; ``(passed, message)``, the message naming the block
        that raised, with its traceback (a worker that died or hung is started again for the next file)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        filename = str(ROOT / path)  # a traceback then shows the lines of the markdown file
        code, what = [], {}
        for block in blocks:
            code.append((filename, block.line, block.source))
            what[block.line] = f"the block at line {block.line}"
            if block.check:
                code.append((filename, block.check_line, block.check))
                what[block.check_line] = (
                    f"the check at line {block.check_line} (of the block at line {block.line})"
                )
        offset = self.log.stat().st_size
        self.process.stdin.write(json.dumps([str(cwd), code]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.replies], [], [], timeout)
        reply = self.replies.readline() if ready else ""
        with open(self.log, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            output = log.read()
        if not reply:  # hung or died
            self.stop()
            return False, f"{path}: the run died or passed {timeout} s:\n{output[-6000:]}"
        failed = json.loads(reply)
        if failed is None:
            return True, output
        return False, f"{path}: {what[failed]} failed:\n{output[-6000:]}"


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    process = Worker(tmp_path_factory.mktemp("docs-worker") / "output.log")
    yield process
    process.stop()


@pytest.mark.parametrize("path", DOC_FILES)
def test_examples_run_and_print_what_they_claim(path, tmp_path, request, worker):
    text = (ROOT / path).read_text(encoding="utf-8")
    blocks = examples(text, path)
    if "DIFFBRAIN_DATA" in re.sub(r"^```(?!python).*?^```", "", text, flags=re.M | re.S):
        request.getfixturevalue("shared_data")  # python or prose reads the data sets: skip when absent
    if not request.config.getoption("--run-slow"):
        blocks = [block for block in blocks if block.skip is None]
    passed, message = worker.run(path, blocks, tmp_path)
    assert passed, message


def test_the_user_facing_docs_are_all_found():
    expected = {"README.md", "docs/getting-started.md"} | {
        f"docs/guides/{name}.md" for name in ("fit", "learn", "networks", "ops", "reproduce", "zoo")
    }
    assert expected <= set(DOC_FILES)


def test_a_raising_example_fails_and_names_its_block(worker, tmp_path):
    text = "Text.\n\n```python\nx = 1\n```\n\n```python\ny = x + 1\nraise ValueError(y)\n```\n"
    passed, message = worker.run("example.md", examples(text, "example.md"), tmp_path)
    assert not passed
    assert "example.md: the block at line 8 failed" in message
    assert 'example.md", line 9' in message  # the traceback points into the markdown file
    assert "ValueError: 2" in message


def test_a_failing_check_fails_the_run_and_files_do_not_share_names(worker, tmp_path):
    text = "```python\nx = 1\n```\n<!-- docs-test: check\nassert x == 2, x\n-->\n"
    blocks = examples(text, "example.md")
    assert blocks == [Example(2, "x = 1", "assert x == 2, x", 5)]
    passed, message = worker.run("example.md", blocks, tmp_path)
    assert not passed and "the check at line 5 (of the block at line 2) failed" in message
    passed, message = worker.run("other.md", examples("```python\nprint(x)\n```\n", "other.md"), tmp_path)
    assert not passed and "NameError: name 'x' is not defined" in message


def test_a_dead_worker_fails_its_file_and_is_started_again(worker, tmp_path):
    crash = examples("```python\nimport os\n\nos._exit(3)\n```\n", "crash.md")
    passed, message = worker.run("crash.md", crash, tmp_path)
    assert not passed and "crash.md: the run died" in message
    passed, message = worker.run("fine.md", examples("```python\nprint(6 * 7)\n```\n", "fine.md"), tmp_path)
    assert passed and "42" in message


def test_a_skipped_block_needs_a_reason_and_markers_need_a_block():
    skipped = "<!-- docs-test: skip (runs for minutes) -->\n```python\nx = 1\n```\n"
    assert examples(skipped, "a.md")[0].skip == "runs for minutes"
    with pytest.raises(ValueError, match="with a reason"):
        examples("<!-- docs-test: skip () -->\n```python\nx = 1\n```\n", "a.md")
    with pytest.raises(ValueError, match="with a reason"):
        examples("<!-- docs-test: skip -->\n```python\nx = 1\n```\n", "a.md")
    with pytest.raises(ValueError, match="attached to no python block"):
        examples("<!-- docs-test: skip (why) -->\n\n```python\nx = 1\n```\n", "a.md")
    with pytest.raises(ValueError, match="not closed"):
        examples("```python\nx = 1\n", "a.md")


def test_docstring_examples_are_headed_examples():
    """Google style's section is ``Examples:``; griffe reads ``Example:`` as an admonition, whose ``>>>``
    lines the API reference then shows as nested blockquotes (and a doctest output such as ``[15.0, 30.0]``
    as a broken cross-reference, failing ``mkdocs build --strict``)."""
    singular = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("diffbrain", "zoo", "ops", "fit", "tasks", "learn", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() == "Example:"
    ]
    assert not singular, f"use `Examples:` at {singular}"
