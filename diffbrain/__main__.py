"""``python -m diffbrain``: the same as the ``diffbrain`` command."""

from .cli import main

main()
