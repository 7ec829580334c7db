"""``vcp manifest FORMAT ...``: a dataset's own files -> the canonical manifest CSV."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
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
Classes = Annotated[str | None, typer.Option(metavar="FILE", help=(
    "The dataset's class list (classInd.txt, one name a line, or JSON).")
)]


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


@dataclass(frozen=True)
class Importer:
    """One ``vcp manifest FORMAT``: its arguments (besides -o and --allow-missing), and what
    it runs on them: ``run(**arguments) -> (Imported, the input files -o must not replace)``."""

    name: str
    short_help: str
    doc: str
    params: tuple[tuple[str, object, object], ...]  # (name, annotation, default or inspect.Parameter.empty)
    run: Callable


def _ucf101(videos: Path, splits: Path, fold: int):
    from vcp.inputs.datasets import ucf101

    return ucf101(videos, splits, fold), [splits / "classInd.txt", splits / f"trainlist0{fold}.txt",
                                          splits / f"testlist0{fold}.txt"]


def _hmdb51(videos: Path, splits: Path, fold: int):
    from vcp.inputs.datasets import hmdb51

    return hmdb51(videos, splits, fold), sorted(Path(splits).glob("*.txt"))


def _kinetics(sources: list[Path], classes: str | None):
    from vcp.common.errors import UsageError
    from vcp.inputs.kinetics import kinetics

    if len(sources) < 2:
        raise UsageError("vcp manifest kinetics expects CSV... VIDEOS (at least one CSV, then the video folder)")
    return kinetics(sources[:-1], sources[-1], classes), sources[:-1]


def _ssv2(labels: Path, videos: Path):
    from vcp.inputs.datasets import ssv2

    return ssv2(labels, videos), sorted(Path(labels).glob("*.json"))


def _lists(split: list[str], root: Path, classes: str | None):
    from vcp.common.errors import UsageError
    from vcp.inputs.datasets import from_lists

    splits = {}
    for item in split:
        name, sep, path = item.partition("=")
        if not sep or not name or not path or name in splits:
            raise UsageError(f"--split expects NAME=FILE, once per split, got {item!r}")
        splits[name] = Path(path)
    return from_lists(splits, root, classes), [*splits.values(), *([Path(classes)] if classes and classes != "numeric" else [])]


def _tree(raw: Path):
    from vcp.inputs.datasets import from_tree

    return from_tree(raw), []


_ = inspect.Parameter.empty
IMPORTERS = (
    Importer("tree", "A RAW/<split>/<category>/[<subcategory>/] tree.", "A RAW/<split>/<category>/[<subcategory>/] tree.",
             (("raw", Annotated[Path, typer.Argument(metavar="RAW")], _),), _tree),
    Importer("ucf101", "UCF101: classInd.txt indices, one fold's lists.",
             "UCF101: classInd.txt's classes (labels = its numbers - 1), trainlist/testlist of one fold.",
             (("videos", Annotated[Path, typer.Argument(metavar="VIDEOS", help="The UCF-101 folder.")], _),
              ("splits", Annotated[Path, typer.Argument(metavar="SPLITS", help="The ucfTrainTestlist folder.")], _),
              ("fold", Fold, 1)), _ucf101),
    Importer("hmdb51", "HMDB51: one fold's split files; sorted class names.",
             "HMDB51: one fold's train (1) and test (2) videos; indices = sorted class names.",
             (("videos", Annotated[Path, typer.Argument(metavar="VIDEOS", help="<class>/<file>.avi folders.")], _),
              ("splits", Annotated[Path, typer.Argument(metavar="SPLITS", help="The <class>_test_split<K>.txt files.")], _),
              ("fold", Fold, 1)), _hmdb51),
    Importer("kinetics", "Kinetics: annotation CSVs, trimmed or whole videos.",
             "Kinetics: CSVs label,youtube_id,time_start,time_end,split (test: no label); trimmed or whole videos. "
             "Labels: the sorted class names of every CSV given (or --classes).",
             (("sources", Annotated[list[Path], typer.Argument(metavar="CSV [CSV] VIDEOS",
                                                               help="One or more annotation CSVs, then the video folder.")], _),
              ("classes", Classes, None)), _kinetics),
    Importer("ssv2", "Something-Something v2: labels, train/validation/test.",
             "Something-Something v2: something-something-v2-labels.json indices (or labels.json), and whichever of "
             "-train/-validation/-test.json are there (test: unlabeled).",
             (("labels", Annotated[Path, typer.Argument(metavar="LABELS", help="Folder of something-something-v2-*.json.")], _),
              ("videos", Annotated[Path, typer.Argument(metavar="VIDEOS", help="The <id>.webm folder.")], _)), _ssv2),
    Importer("list", "Annotation lists: 'path label' lines per split.",
             "Annotation lists (mmaction2 style): one 'path label' line per video (0-based label; a path alone: unlabeled).",
             (("split", Annotated[list[str], typer.Option(metavar="NAME=FILE", help="A split's 'path label' file; repeatable.")], _),
              ("root", Annotated[Path, typer.Option(metavar="DIR", help="The folder the paths are relative to.")], _),
              ("classes", Classes, None)), _lists),
)


def _command(importer: Importer) -> Callable:
    """The Typer command of one table row: its arguments, then -o and --allow-missing."""

    def command(**arguments) -> None:
        output, allow_missing = arguments.pop("output"), arguments.pop("allow_missing")
        with user_errors(False):
            imported, inputs = importer.run(**arguments)
            _finish(imported, output, allow_missing, inputs)

    kind = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter(name, kind, annotation=annotation, default=default)
              for name, annotation, default in importer.params]
    params += [inspect.Parameter("output", kind, annotation=Output),
               inspect.Parameter("allow_missing", kind, annotation=AllowMissing, default=False)]
    command.__signature__ = inspect.Signature(params)
    command.__doc__, command.__name__ = importer.doc, f"{importer.name}_command"
    return command


for _importer in IMPORTERS:
    app.command(_importer.name, short_help=_importer.short_help)(_command(_importer))
