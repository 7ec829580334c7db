"""Filling a ``torch.save`` archive laid out with ``skip_data``: storages written in place
(or copied in by the kernel), the pickle's pair-id placeholder replaced, zip CRCs patched.

The archive stays an ordinary zip that ``torch.load`` (``weights_only``, ``mmap``) and
``zipfile.testzip`` accept. Used by :mod:`vcp.store.pt_writer`; :func:`read_layout` also tells
:mod:`vcp.store.pt_reader` where each clip lies.
"""

from __future__ import annotations

import collections
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

_CHUNK = 32 << 20


class FileSource:
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


class InPlace:
    """The storage's ``size`` bytes were written where the archive wants them: no copy."""

    def __init__(self, crc: int, size: int):
        self.crc, self.size = crc, size

    def copy_to(self, fh, offset: int) -> int:
        return self.size


class BytesSource:
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


def read_layout(archive: Path):
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


def fill_storages(archive: Path, sources: dict) -> None:
    layout, central_dir = read_layout(archive)
    with open(archive, "rb+") as fh:
        for key, source in sources.items():
            offset, size, info = layout[key]
            written = source.copy_to(fh, offset)
            if written != size:
                raise RuntimeError(f"{key}: wrote {written} bytes, archive expects {size}")
            _patch_crc(fh, info, source.crc, central_dir)


def patch_pickle(archive: Path, old: str, new: str) -> None:
    """Replace the string ``old`` by ``new`` (same length) in the archive's ``data.pkl``."""
    assert len(old) == len(new)
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data.pkl"))
        central_dir = zf.start_dir
    with open(archive, "rb+") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
        start = info.header_offset + 30 + name_len + extra_len
        fh.seek(start)
        pickled = fh.read(info.file_size)
        if pickled.count(old.encode()) != 1:
            raise RuntimeError(f"{archive}: the pair id placeholder is not in data.pkl exactly once")
        pickled = pickled.replace(old.encode(), new.encode())
        fh.seek(start)
        fh.write(pickled)
        _patch_crc(fh, info, zlib.crc32(pickled), central_dir)


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
