"""``vcp manifest FORMAT ...``: a dataset's own files -> the canonical manifest CSV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vcp.cli.common import EXIT_OK, EXIT_PARTIAL, user_errors

app = typer.Typer(help="Write a manifest CSV (split,path,label,index) from a dataset's own files.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)

Output = Annotated[Path, typer.Option("--output", "-o", metavar="CSV", help="The manifest to write.")]
AllowMissing = Annotated[bool, typer.Option("--allow-missing", show_default=False,
                                            help="Exit 0 when listed videos are missing (dead links).")]
Fold = Annotated[int, typer.Option(min=1, max=3, metavar="K", help="The official split (1, 2 or 3).")]


def _finish(imported, output: Path, allow_missing: bool, inputs: list[Path] = ()) -> None:
    """Write the rows and the class list; name the missing videos (one summary line and
    ``<manifest>.missing.txt`` with --allow-missing), and exit 3 when some were (0 with
    --allow-missing)."""
    from collections import Counter

    from vcp.common.errors import LayoutError
    from vcp.common.report import one_line
    from vcp.inputs.classes import classes_sidecar
    from vcp.inputs.manifest_out import output_problem, write_manifest

    if not imported.rows:
        raise LayoutError(f"no listed video exists under {imported.root} ({len(imported.missing)} missing): nothing written")
    videos = [imported.root / r["path"] for r in imported.rows]
    write_manifest(imported.rows, output, classes=imported.classes, inputs=[*inputs, *videos])
    if imported.missing and allow_missing:
        listed = output.with_suffix(".missing.txt")
        problem = output_problem(listed, [*inputs, *videos])
        if problem is None:
            listed.write_text("".join(f"{line}\n" for line in imported.missing), encoding="utf-8")
        shown = "; ".join(imported.missing[:5]) + ("; ..." if len(imported.missing) > 5 else "")
        print(one_line(f"vcp manifest: {len(imported.missing)} listed videos are missing ({shown})"
                       + (f"; all of them in {listed}" if problem is None else "")), file=sys.stderr)
    else:
        for line in imported.missing:
            print(one_line(f"vcp: missing: {line}"), file=sys.stderr)
    counts = Counter(r["split"] for r in imported.rows)
    unlabeled = sum(1 for r in imported.rows if not r["label"])
    print(one_line(
        f"vcp manifest: wrote {output}: {len(imported.rows)} videos ({', '.join(f'{s} {n}' for s, n in counts.items())}"
        + (f"; {unlabeled} unlabeled" if unlabeled else "") + f"), {len(imported.classes)} classes (labels 0.."
        f"{len(imported.classes) - 1}, listed in {classes_sidecar(output).name})"
        + (f", {len(imported.missing)} listed videos missing" if imported.missing else "")
        + f"; paths are relative to {imported.root}: vcp extract --from-videos --manifest {output} --root {imported.root} "
        "FEATURES"), file=sys.stderr)
    raise typer.Exit(EXIT_PARTIAL if imported.missing and not allow_missing else EXIT_OK)


@app.command("tree", short_help="A RAW/<split>/<category>/[<subcategory>/] tree.")
def tree_command(raw: Annotated[Path, typer.Argument(metavar="RAW")], output: Output,
                 allow_missing: AllowMissing = False) -> None:
    """A RAW/<split>/<category>/[<subcategory>/] tree."""
    from vcp.inputs import datasets

    with user_errors(False):
        _finish(datasets.from_tree(raw), output, allow_missing)


@app.command("ucf101", short_help="UCF101: classInd.txt indices, one fold's lists.")
def ucf101_command(videos: Annotated[Path, typer.Argument(metavar="VIDEOS", help="The UCF-101 folder.")],
                   splits: Annotated[Path, typer.Argument(metavar="SPLITS", help="The ucfTrainTestlist folder.")],
                   output: Output, fold: Fold = 1, allow_missing: AllowMissing = False) -> None:
    """UCF101: classInd.txt indices (1-based), trainlist/testlist of one fold."""
    from vcp.inputs import datasets

    with user_errors(False):
        _finish(datasets.ucf101(videos, splits, fold), output, allow_missing,
                [splits / "classInd.txt", splits / f"trainlist0{fold}.txt", splits / f"testlist0{fold}.txt"])


@app.command("hmdb51", short_help="HMDB51: one fold's split files; sorted class names.")
def hmdb51_command(videos: Annotated[Path, typer.Argument(metavar="VIDEOS", help="<class>/<file>.avi folders.")],
                   splits: Annotated[Path, typer.Argument(metavar="SPLITS", help="The <class>_test_split<K>.txt files.")],
                   output: Output, fold: Fold = 1, allow_missing: AllowMissing = False) -> None:
    """HMDB51: one fold's train (1) and test (2) videos; indices = sorted class names."""
    from vcp.inputs import datasets

    with user_errors(False):
        _finish(datasets.hmdb51(videos, splits, fold), output, allow_missing, sorted(Path(splits).glob("*.txt")))


@app.command("kinetics", short_help="Kinetics: annotation CSVs, trimmed or whole videos.")
def kinetics_command(sources: Annotated[list[Path], typer.Argument(metavar="CSV [CSV] VIDEOS",
                                                                   help="One or more annotation CSVs, then the video folder.")],
                     output: Output, allow_missing: AllowMissing = False,
                     classes: Annotated[str | None, typer.Option(metavar="FILE", help=(
                         "The dataset's class list (one name a line, or JSON); default: the sorted labels of "
                         "every CSV given."))] = None) -> None:
    """Kinetics: CSVs label,youtube_id,time_start,time_end,split (test: no label); trimmed or
    whole videos. Labels: the sorted class names of every CSV given (or --classes)."""
    from vcp.common.errors import UsageError
    from vcp.inputs.kinetics import kinetics

    with user_errors(False):
        if len(sources) < 2:
            raise UsageError("vcp manifest kinetics expects CSV... VIDEOS (at least one CSV, then the video folder)")
        _finish(kinetics(sources[:-1], sources[-1], classes), output, allow_missing, sources[:-1])


@app.command("ssv2", short_help="Something-Something v2: labels, train/validation/test.")
def ssv2_command(labels: Annotated[Path, typer.Argument(metavar="LABELS", help="Folder of something-something-v2-*.json.")],
                 videos: Annotated[Path, typer.Argument(metavar="VIDEOS", help="The <id>.webm folder.")],
                 output: Output, allow_missing: AllowMissing = False) -> None:
    """Something-Something v2: something-something-v2-labels.json indices (or labels.json),
    and whichever of -train/-validation/-test.json are there (test: unlabeled)."""
    from vcp.inputs import datasets

    with user_errors(False):
        _finish(datasets.ssv2(labels, videos), output, allow_missing, sorted(Path(labels).glob("*.json")))


@app.command("list", short_help="Annotation lists: 'path label' lines per split.")
def list_command(split: Annotated[list[str], typer.Option(metavar="NAME=FILE", help="A split's 'path label' file; repeatable.")],
                 root: Annotated[Path, typer.Option(metavar="DIR", help="The folder the paths are relative to.")],
                 output: Output,
                 classes: Annotated[str | None, typer.Option(metavar="FILE", help="Names of numeric labels (classInd.txt, names, JSON).")] = None,
                 allow_missing: AllowMissing = False) -> None:
    """Annotation lists (mmaction2 style): one 'path label' line per video (0-based label;
    a path alone: unlabeled)."""
    from vcp.common.errors import UsageError
    from vcp.inputs import datasets

    with user_errors(False):
        splits = {}
        for item in split:
            name, sep, path = item.partition("=")
            if not sep or not name or not path or name in splits:
                raise UsageError(f"--split expects NAME=FILE, once per split, got {item!r}")
            splits[name] = Path(path)
        _finish(datasets.from_lists(splits, root, classes), output, allow_missing,
                [*splits.values(), *([Path(classes)] if classes and classes != "numeric" else [])])
