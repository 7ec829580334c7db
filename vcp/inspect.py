"""``python -m vcp.inspect PROCESSED [FEATURES]``: a short report of what the stages wrote."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import torch

from .pt_writer import META_NAME, PT_NAME


def main(argv: list[str]) -> None:
    processed = Path(argv[0])
    for pt in sorted(processed.glob(f"*/*/*/{PT_NAME}")):
        data = torch.load(pt, weights_only=True, mmap=True)
        meta = json.loads((pt.parent / META_NAME).read_text())
        print(
            f"{pt.parent.relative_to(processed)}: videos {tuple(data['videos'].shape)} "
            f"labels {data['labels'].tolist()} strategy={meta['sampling_strategy']} "
            f"failed={len(meta['failed'])}"
        )
    if len(argv) > 1:
        for h5 in sorted(Path(argv[1]).glob("*.h5")):
            with h5py.File(h5, "r") as f:
                print(
                    f"{h5.name}: features {f['features'].shape} {f['features'].dtype} "
                    f"gzip={f['features'].compression_opts} num_frames={sorted(set(f['num_frames'][:].tolist()))} "
                    f"backbone={f.attrs['backbone']} weights={f.attrs['weights']}"
                )


if __name__ == "__main__":
    main(sys.argv[1:])
