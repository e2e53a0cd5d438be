"""Raw source files on S3: copied once into a local cache so every reader stays a local reader.

Raw datasets are read once per ``prepare_data`` run, so a plain copy is simpler and faster
than streaming npz/JSON members over the network. The S3 connection settings are the sequence
store's (:func:`raypose.data.store.filesystem_for`), so one endpoint option serves both.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from raypose.errors import RayposeDataError


def is_remote(path: str | Path) -> bool:
    return "://" in str(path)


def cache_root() -> Path:
    return Path(os.environ.get("RAYPOSE_CACHE", Path(tempfile.gettempdir()) / "raypose-cache")) / "raw"


def fetch(uri: str, s3_endpoint: str = "") -> Path:
    """Local copy of the file or folder at ``uri`` (re-downloaded on every call: sources change)."""
    import pyarrow.fs as pafs

    from raypose.data.store import filesystem_for

    if not uri.startswith("s3://"):
        raise RayposeDataError(uri, "only local paths and s3:// URIs are supported")
    fs, key = filesystem_for(uri, s3_endpoint)
    try:
        info = fs.get_file_info(key)
    except OSError as e:
        raise RayposeDataError(uri, f"cannot reach the object store ({e})") from None
    if info.type == pafs.FileType.NotFound:
        raise RayposeDataError(uri, "file not found")
    dest = cache_root() / hashlib.sha1(f"{s3_endpoint}|{uri}".encode()).hexdigest()[:16] / Path(key).name
    if dest.is_dir():
        shutil.rmtree(dest)  # a stale copy could hold files since deleted upstream
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        pafs.copy_files(key, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    except OSError as e:
        raise RayposeDataError(uri, f"download failed ({e})") from None
    return dest
