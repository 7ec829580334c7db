"""The command line: Typer commands, options, settings files, dry-run plans.

``vcp.cli.app`` is the Typer app (in ``vcp.cli.commands``) and ``vcp.cli.main`` the ``vcp`` command; they load on
first use, so that importing one command's module does not import them all.
"""


def main() -> None:
    from vcp.cli.commands import main as run

    run()


def __getattr__(name):
    if name == "app":
        from vcp.cli.commands import app

        return app
    raise AttributeError(name)
