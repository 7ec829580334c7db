"""Helpers shared by the CLI commands: error reporting and exit codes."""

from __future__ import annotations

import contextlib
import sys
import traceback

import typer

from vcp.common.errors import LayoutError, UsageError
from vcp.common.report import one_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def start_run(run: dict):
    """Before any work, from the ``run`` options: this process's shard; FFmpeg's own log
    lines only with --debug; under torchrun the ranks keep per-file errors to themselves
    (rank 0 prints the merged list once at the end)."""
    from dali_pipes import set_ffmpeg_logging
    from vcp.common.report import quiet_file_errors
    from vcp.stages.shard import resolve_shard

    shard = resolve_shard(run["shard"])
    if not run["dry_run"]:  # a plan decodes nothing: FFmpeg's log level (DALI's libavutil, ~0.5 s to load) can wait
        set_ffmpeg_logging(run["debug"])
    quiet_file_errors(shard.launcher == "torchrun")
    return shard


def finish_run(shard, root, own_failures: int, strict: bool) -> int:
    """Merge a torchrun job on rank 0 and choose the exit code.

    A single process (or ``--shard`` by hand): 3 when some inputs failed, else 0. Under a
    launcher (torchrun, srun), bad input files are data, not a crash: every rank exits 0
    so that the launcher neither tears the job down nor restarts a finished one; with
    ``--strict``, rank 0 of torchrun (or each srun task, for its own files) exits 3 when
    files failed. Rank 0 of torchrun prints the job's failed files once, from the merge.
    """
    from vcp.common.report import file_error, quiet_file_errors
    from vcp.stages.merge import finish_sharded_run, merged_failures

    merged = finish_sharded_run(shard, root)
    if shard.launcher not in ("torchrun", "slurm"):
        return EXIT_PARTIAL if own_failures else EXIT_OK
    failures = own_failures
    if shard.launcher == "torchrun":
        if shard.index != 0:
            return EXIT_OK
        quiet_file_errors(False)
        listed = merged_failures(merged)
        for where, reason in listed:
            file_error(where, reason)
        if listed:
            print(f"vcp: {len(listed)} input file(s) failed in this job (recorded in the merged outputs)", file=sys.stderr)
        failures = len(listed)
    return EXIT_PARTIAL if strict and failures else EXIT_OK


def fail(message: str, code: int) -> typer.Exit:
    print(f"vcp: error: {one_line(message)}", file=sys.stderr, flush=True)
    return typer.Exit(code=code)


@contextlib.contextmanager
def user_errors(debug: bool = False, *, stoppable: bool = False):
    """Turn known errors into one stderr line + exit code; never a traceback for users.
    ``stoppable`` (the stages): SIGTERM/SIGINT commit the progress made and exit 143/130."""
    from vcp.stages.interrupt import Stopped, graceful_stop

    try:
        with graceful_stop() if stoppable else contextlib.nullcontext():
            yield
    except typer.Exit:
        raise
    except Stopped as exc:
        print(f"vcp: {exc}: the work done is committed; run the same command again to resume", file=sys.stderr, flush=True)
        raise typer.Exit(code=exc.exit_code) from None
    except (UsageError, LayoutError) as exc:  # vcp's own: a bug's ValueError is exit 1, not 2
        raise fail(str(exc), EXIT_USAGE) from None
    except Exception as exc:  # noqa: BLE001
        if debug:
            traceback.print_exc()
        text = " ".join(str(exc).split())  # one line: HDF5's messages carry newlines
        where = getattr(exc, "vcp_file", None)  # the output being written (a write error names no file)
        if where is not None and str(where) not in text:
            text = f"{where}: {text}"
        raise fail(f"{type(exc).__name__}: {text} (rerun with --debug for the traceback)", EXIT_ERROR) from None
