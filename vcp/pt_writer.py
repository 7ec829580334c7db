"""The ``processed_data.pt`` writer: bounded memory, atomic commit.

Clips are appended to a raw disk buffer as they arrive, so memory does not grow with
the number of videos. At commit, the contract dict is written with
``torch.serialization.skip_data`` (the archive's layout without the storage bytes) and
the storages are then filled in place from the buffer in fixed-size chunks, CRCs
patched, and the file renamed into place. The result is an ordinary ``torch.save``
archive: ``torch.load(path, weights_only=True)`` (and ``mmap=True``) read it.

When the caller says up front which clips it expects (``expected``), the buffer *is* the
archive: its layout for those clips is written first (sparse, no bytes yet) and the clips
go straight into the ``videos`` storage, so the common case (every video decodes) never
copies the data. If what arrived differs (a video failed), commit falls back to a fresh
archive filled from the clips already written.

Contract (DESIGN.md): ``videos`` float32 ``[N, T, 3, H, W]``, ``labels`` int64 ``[N]``,
``filenames`` list[str], ``category_mapping`` {name: index}.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import torch

from .atomic import replace_into, tmp_path_for, write_json_atomic

PT_NAME = "processed_data.pt"
META_NAME = "metadata.json"
_CHUNK = 32 << 20


class PtWriter:
    """``with PtWriter(dir, ...) as w: w.add(clip, name, label); w.commit(metadata)``.

    Leaving the block without :meth:`commit` (an exception, a kill) leaves no output.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        frames: int,
        size: int,
        category_mapping: dict[str, int],
        dtype: torch.dtype = torch.float32,
        name: str = PT_NAME,
        meta_name: str = META_NAME,
        expected: list[tuple[str, int]] | None = None,
    ):
        self.directory = Path(directory)
        self.meta_name = meta_name
        self.shape = (frames, 3, size, size)
        self.category_mapping = dict(category_mapping)
        self.dtype = dtype
        self.filenames: list[str] = []
        self.labels: list[int] = []
        self.final = self.directory / name
        self._buffer_path = tmp_path_for(self.directory / (name + ".buffer"))
        self._buffer = None
        self._crc = 0  # CRC-32 of the clips, kept while writing (the zip record needs it)
        self._expected = list(expected) if expected else None
        self._data_offset = 0  # where the clips start in the buffer file
        self._written = 0  # bytes of clips written

    def __enter__(self) -> PtWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._expected:
            names, labels = zip(*self._expected, strict=True)
            with torch.serialization.skip_data():
                torch.save(self._skeleton(list(names), list(labels)), self._buffer_path)
            layout, _central_dir = _read_layout(self._buffer_path)
            self._data_offset = layout["videos"][0]
            self._buffer = open(self._buffer_path, "rb+")
            self._buffer.seek(self._data_offset)
        else:
            self._buffer = open(self._buffer_path, "wb")
        return self

    def _skeleton(self, filenames: list[str], labels: list[int]) -> dict:
        return {
            # Never touched: only its shape/dtype are serialized under skip_data.
            "videos": torch.empty((len(filenames), *self.shape), dtype=self.dtype),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "filenames": list(filenames),
            "category_mapping": dict(self.category_mapping),
        }

    def __exit__(self, *exc) -> None:
        self._close_buffer()

    def _close_buffer(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
        with contextlib.suppress(FileNotFoundError):
            self._buffer_path.unlink()

    def add(self, clip: torch.Tensor, filename: str, label: int) -> None:
        if tuple(clip.shape) != self.shape:
            raise ValueError(f"clip shape {tuple(clip.shape)} != expected {self.shape}")
        clip = clip.detach()
        if self.dtype == torch.uint8:
            clip = clip.round().clamp_(0, 255)
        array = clip.to("cpu", self.dtype).contiguous().numpy()
        view = memoryview(array).cast("B")
        self._buffer.write(view)
        self._crc = zlib.crc32(view, self._crc)
        self._written += view.nbytes
        self.filenames.append(filename)
        self.labels.append(int(label))

    def commit(self, metadata: dict) -> Path:
        """Write ``processed_data.pt`` then ``metadata.json``, each atomically."""
        self._buffer.close()
        self._buffer = None
        skeleton = self._skeleton(self.filenames, self.labels)
        labels = _BytesSource(skeleton["labels"].numpy().tobytes())
        laid_out = self._expected == list(zip(self.filenames, self.labels, strict=True))
        tmp = self._buffer_path if laid_out else tmp_path_for(self.final)
        try:
            if laid_out:  # the clips are already in place: labels and CRCs only
                _fill_storages(tmp, {"videos": _InPlace(self._crc, self._written), "labels": labels})
            else:
                with torch.serialization.skip_data():
                    torch.save(skeleton, tmp)
                videos = _FileSource(self._buffer_path, self._crc, offset=self._data_offset, size=self._written)
                _fill_storages(tmp, {"videos": videos, "labels": labels})
            replace_into(tmp, self.final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        finally:
            self._close_buffer()
        write_json_atomic(self.directory / self.meta_name, metadata)
        return self.final


# -- filling a skip_data archive --------------------------------------------------------
class _FileSource:
    """``size`` bytes of the disk buffer from ``offset``; copied in the kernel
    (copy_file_range) when the OS allows."""

    def __init__(self, path: Path, crc: int, *, offset: int = 0, size: int | None = None):
        self.path, self.crc, self.offset = path, crc, offset
        self.size = path.stat().st_size - offset if size is None else size

    def copy_to(self, fh, offset: int) -> int:
        size, start = self.size, self.offset
        with open(self.path, "rb") as src:
            done = 0
            try:
                while done < size:
                    n = os.copy_file_range(src.fileno(), fh.fileno(), size - done, start + done, offset + done)
                    if n == 0:
                        break
                    done += n
            except (AttributeError, OSError):  # no copy_file_range here: plain copy
                src.seek(start + done)
                fh.seek(offset + done)
                while done < size and (block := src.read(min(_CHUNK, size - done))):
                    fh.write(block)
                    done += len(block)
        return done


class _InPlace:
    """The storage's ``size`` bytes were written where the archive wants them: no copy."""

    def __init__(self, crc: int, size: int):
        self.crc, self.size = crc, size

    def copy_to(self, fh, offset: int) -> int:
        return self.size


class _BytesSource:
    def __init__(self, data: bytes):
        self.data, self.crc = data, zlib.crc32(data)

    def copy_to(self, fh, offset: int) -> int:
        fh.seek(offset)
        fh.write(self.data)
        return len(self.data)


class _StorageKeys(pickle.Unpickler):
    """Reads ``data.pkl`` without torch: each tensor becomes ``("tensor", storage_key)``."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, *args, **kwargs: ("tensor", storage)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return f"{module}.{name}"

    def persistent_load(self, pid):
        return pid[2]  # ('storage', type, key, location, numel)


def _read_layout(archive: Path):
    """``{key: (data offset, size, ZipInfo)}`` for each top-level tensor, and the central
    directory's offset."""
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        prefix = names[0].split("/", 1)[0]
        layout = _StorageKeys(zf.open(f"{prefix}/data.pkl")).load()
        infos = {name: zf.getinfo(name) for name in names}
        central_dir = zf.start_dir
    out = {}
    with open(archive, "rb") as fh:
        for key, value in layout.items():
            if not (isinstance(value, tuple) and value[0] == "tensor"):
                continue
            info = infos[f"{prefix}/data/{value[1]}"]
            fh.seek(info.header_offset + 26)
            name_len, extra_len = struct.unpack("<HH", fh.read(4))
            out[key] = (info.header_offset + 30 + name_len + extra_len, info.file_size, info)
    return out, central_dir


def _fill_storages(archive: Path, sources: dict) -> None:
    layout, central_dir = _read_layout(archive)
    with open(archive, "rb+") as fh:
        for key, source in sources.items():
            offset, size, info = layout[key]
            written = source.copy_to(fh, offset)
            if written != size:
                raise RuntimeError(f"{key}: wrote {written} bytes, archive expects {size}")
            _patch_crc(fh, info, source.crc, central_dir)


def _patch_crc(fh, info: zipfile.ZipInfo, crc: int, central_dir: int) -> None:
    packed = struct.pack("<I", crc)
    fh.seek(info.header_offset + 14)  # local file header
    fh.write(packed)
    fh.seek(central_dir)  # central directory: find this member's entry
    target = info.filename.encode()
    while True:
        entry = fh.read(46)
        if len(entry) < 46 or entry[:4] != b"PK\x01\x02":
            raise RuntimeError(f"central directory entry for {info.filename} not found")
        name_len, extra_len, comment_len = struct.unpack("<HHH", entry[28:34])
        name = fh.read(name_len)
        if name == target:
            fh.seek(-(46 + name_len) + 16, 1)
            fh.write(packed)
            return
        fh.seek(extra_len + comment_len, 1)
