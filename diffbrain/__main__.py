"""``python -m diffbrain``: the same as the ``diffbrain`` command."""

from .cli import app

app(prog_name="diffbrain")
