"""``python -m vcp``: the same CLI as the ``vcp`` command (handy with PYTHONPATH checkouts)."""

from vcp.cli import main

main()
