"""``python -m vcp.cli`` (as torchrun launches it): the ``vcp`` command."""

from vcp.cli import main

main()
