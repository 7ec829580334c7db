"""The command line: Typer commands, options, settings files, dry-run plans.

``vcp.cli.app`` is the Typer app (in ``vcp.cli.commands``) and ``vcp.cli.main`` the ``vcp`` command; they load on
first use, so that importing one command's module does not import them all.
"""


def main() -> None:
    """The ``vcp`` command. Its start-up collects no cyclic garbage (:mod:`vcp.common.collector`).
    Once a command has finished (its outputs committed, its files closed), the process ends at
    once: the interpreter's own teardown of DALI's and torch's libraries took 1.2-1.4 s after a
    run (2-core Intel Xeon), longer than many runs' work."""
    from vcp.common import collector

    collector.pause()
    from vcp.cli.commands import main as run

    try:
        run()
    except SystemExit as done:
        _exit_now(done.code)
    _exit_now(0)


def _exit_now(code) -> None:
    import os
    import sys

    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, exit 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code or 0)


def __getattr__(name):
    if name == "app":
        from vcp.cli.commands import app

        return app
    raise AttributeError(name)
