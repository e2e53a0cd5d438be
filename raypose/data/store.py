"""The sequence store: sharded Parquet, one row per View (sequence × camera), plus a manifest.

Layout of a store at ``ROOT`` (a local directory or ``s3://bucket/prefix``)::

    ROOT/manifest.json                      written last: it makes the shard set visible
    ROOT/shards/<dataset>--<subject>-00000.parquet
    ROOT/_tmp/…                             in-flight uploads (never read)

Encoding choice (why): rows are whole sequences of variable length T, so the tensors are
stored *flattened* as ``large_list<float32>`` (T·17·3 values) next to ``num_frames``. A row
stays a lossless, self-describing sequence any Parquet reader understands, the store does
not depend on the receptive field chosen at training time, and the pipeline turns a batch
of rows into fixed-length chunks with pure numpy on the list's flat value buffer (no per-row
Python, no ``fixed_size_list`` → object-array conversion, which NOTES.md measured 3.5× slower).
Shards hold rows of one (dataset, subject) only, so a split by subject is a choice of files.

Atomicity: every shard is serialised in memory, written under ``_tmp/`` and renamed
(``os.replace`` locally; copy + delete on S3), so no half-written shard ever carries a final
name. A rewrite first removes ``manifest.json``; the new manifest is written last (same way).
Same inputs give the same bytes (no timestamps), so re-runs are idempotent.

``root_3d`` (the camera-space pelvis trajectory, for trajectory heads) came after schema v1's
first stores: a manifest lists it in ``columns`` when its shards have it; stores written before
it load as before, with every root unknown (:func:`store_columns`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raypose.cameras import CAMERA_ARRAY_SIZE, Camera
from raypose.errors import RayposeDataError

SCHEMA_VERSION = 1
STORE_FORMAT = "raypose-sequence-store"
NUM_JOINTS = 17
FRAME_VALUES = NUM_JOINTS * 3
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
TMP_DIR = "_tmp"
#: Columns a store may lack (older stores): read as unknown (NaN) when absent.
OPTIONAL_COLUMNS = ("root_3d",)
#: Default fraction of all frames each held-out split (val, then test) receives.
HOLDOUT_FRACTION = 0.1

SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("subject", pa.string()),
    ("action", pa.string()),
    ("camera", pa.string()),
    ("fps", pa.float64()),
    ("num_frames", pa.int64()),
    ("keypoints_2d", pa.large_list(pa.float32())),   # T·17·3: x, y pixels + confidence
    ("joints_3d", pa.large_list(pa.float32())),      # T·17·3: root-relative camera metres
    ("has_3d", pa.bool_()),
    ("valid", pa.large_list(pa.bool_())),            # T
    ("camera_params", pa.list_(pa.float64(), CAMERA_ARRAY_SIZE)),
    ("root_3d", pa.large_list(pa.float32())),        # T·3: camera-frame pelvis metres, NaN = unknown
], metadata={b"raypose.schema_version": str(SCHEMA_VERSION).encode()})


@dataclass
class StoredView:
    """One row read back from the store; same fields as ``raypose.data.sources.View``."""

    dataset: str
    subject: str
    action: str
    camera: Camera
    fps: float
    keypoints_2d: np.ndarray            # (T, 17, 3) float32
    joints_3d: Optional[np.ndarray]     # (T, 17, 3) float32, None when the row has no 3D
    valid: np.ndarray                   # (T,) bool
    root_3d: Optional[np.ndarray] = None  # (T, 3) float32 camera-frame pelvis, NaN = unknown

    @property
    def num_frames(self) -> int:
        return int(self.keypoints_2d.shape[0])


# ------------------------------------------------------------------------------------------
# file systems
# ------------------------------------------------------------------------------------------

def filesystem_for(path: str, s3_endpoint: str = "") -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or ``s3://bucket/prefix``.

    The S3 endpoint override (a local S3 server) comes from the argument or
    ``DataConfig.s3_endpoint``; the region is pinned (``AWS_DEFAULT_REGION`` or us-east-1)
    so pyarrow does not probe for it. Credentials: the AWS environment variables when set,
    else pyarrow's default chain.
    """
    if path.startswith("s3://"):
        kwargs: dict[str, Any] = dict(region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                      allow_bucket_creation=True, connect_timeout=5,
                                      request_timeout=30,
                                      retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            # explicit keys travel with the (pickled) filesystem to Ray workers, whose
            # environment may predate the driver's credentials
            kwargs.update(access_key=os.environ["AWS_ACCESS_KEY_ID"],
                          secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                          session_token=os.environ.get("AWS_SESSION_TOKEN"))
        if s3_endpoint:
            scheme = "https" if s3_endpoint.startswith("https://") else "http"
            kwargs.update(endpoint_override=re.sub(r"^https?://", "", s3_endpoint), scheme=scheme)
        return pafs.S3FileSystem(**kwargs), path[len("s3://"):].rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(path)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def _read_bytes(fs: pafs.FileSystem, path: str, retries: int = 0, backoff: float = 0.5,
                missing_retries: int = 3) -> bytes:
    """Whole object. Network errors are retried ``retries`` times with exponential backoff
    (≤ 5 s each); a missing object only ``missing_retries`` times (a bucket being restored
    after a server restart briefly lacks keys). Data errors are never retried here."""
    missing = 0
    for attempt in range(retries + 1):
        try:
            with fs.open_input_stream(path) as f:
                return f.read()
        except FileNotFoundError:
            missing += 1
            if missing > min(missing_retries, retries):
                raise
        except OSError:
            if attempt == retries:
                raise
        time.sleep(min(backoff * 2 ** attempt, 5.0))
    raise FileNotFoundError(path)


def _atomic_write(fs: pafs.FileSystem, root: str, rel: str, data: bytes) -> None:
    """Write ``data`` under a temporary name, then rename it to ``root/rel``."""
    tmp = _join(root, TMP_DIR, f"{rel.replace('/', '__')}.{uuid.uuid4().hex}")
    final = _join(root, rel)
    fs.create_dir(tmp.rsplit("/", 1)[0], recursive=True)
    fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, final)  # os.replace locally; CopyObject + DeleteObject on S3


# ------------------------------------------------------------------------------------------
# views ↔ Arrow
# ------------------------------------------------------------------------------------------

def _large_list(flat: np.ndarray, lengths: np.ndarray, type_: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, type=type_))


def _root(view: Any, T: int, where: str = "") -> np.ndarray:
    """A view's (T, 3) camera-frame root track, NaN where it has none."""
    root = getattr(view, "root_3d", None)
    if root is None:
        return np.full((T, 3), np.nan, np.float32)
    root = np.asarray(root, dtype=np.float32)
    if root.shape != (T, 3):
        raise RayposeDataError(where or view.dataset, f"root_3d has shape {root.shape}, expected ({T}, 3)")
    return root


def _checked(view: Any) -> tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
    kp = np.asarray(view.keypoints_2d, dtype=np.float32)
    T = kp.shape[0]
    where = f"{view.dataset}/{view.subject}/{view.action}/{view.camera.name}"
    if kp.shape != (T, NUM_JOINTS, 3):
        raise RayposeDataError(where, f"keypoints_2d has shape {kp.shape}, expected (T, 17, 3)")
    j3 = None if view.joints_3d is None else np.asarray(view.joints_3d, dtype=np.float32)
    if j3 is not None and j3.shape != kp.shape:
        raise RayposeDataError(where, f"joints_3d has shape {j3.shape}, expected {kp.shape}")
    valid = np.ones(T, bool) if getattr(view, "valid", None) is None else np.asarray(view.valid, bool)
    if valid.shape != (T,):
        raise RayposeDataError(where, f"valid has shape {valid.shape}, expected ({T},)")
    return kp, j3, valid


def views_to_table(views: Sequence[Any]) -> pa.Table:
    """Arrow table in the store schema; any object with View's attributes is accepted."""
    cols: dict[str, list] = {k: [] for k in ("dataset", "subject", "action", "camera", "fps",
                                              "num_frames", "has_3d", "camera_params")}
    kps, j3s, valids, roots = [], [], [], []
    for v in views:
        kp, j3, valid = _checked(v)
        cols["dataset"].append(v.dataset)
        cols["subject"].append(v.subject)
        cols["action"].append(v.action)
        cols["camera"].append(v.camera.name)
        cols["fps"].append(float(v.fps))
        cols["num_frames"].append(kp.shape[0])
        cols["has_3d"].append(j3 is not None)
        cols["camera_params"].append(v.camera.to_array())
        kps.append(kp.reshape(-1))
        j3s.append(np.zeros(kp.size, np.float32) if j3 is None else j3.reshape(-1))
        valids.append(valid)
        roots.append(_root(v, kp.shape[0], f"{v.dataset}/{v.subject}/{v.action}/{v.camera.name}").reshape(-1))
    lengths = np.asarray(cols["num_frames"], dtype=np.int64)
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
    arrays = {
        **{k: pa.array(cols[k], type=SCHEMA.field(k).type) for k in ("dataset", "subject", "action", "camera", "fps", "num_frames", "has_3d")},
        "keypoints_2d": _large_list(cat(kps, np.float32), lengths * FRAME_VALUES, pa.float32()),
        "joints_3d": _large_list(cat(j3s, np.float32), lengths * FRAME_VALUES, pa.float32()),
        "valid": _large_list(cat(valids, bool), lengths, pa.bool_()),
        "camera_params": pa.FixedSizeListArray.from_arrays(
            pa.array(cat(cols["camera_params"], np.float64).reshape(-1) if cols["camera_params"] else np.zeros(0), pa.float64()),
            CAMERA_ARRAY_SIZE),
        "root_3d": _large_list(cat(roots, np.float32), lengths * 3, pa.float32()),
    }
    return pa.Table.from_arrays([arrays[f.name] for f in SCHEMA], schema=SCHEMA)


def flat_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The concatenated values of a list column as numpy (respects slicing; no per-row work)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False)


def root_values(table: pa.Table) -> np.ndarray:
    """(ΣT, 3) camera-frame roots of a store table's rows, NaN where unknown or where the table
    (a store written before ``root_3d``) has no such column."""
    if "root_3d" not in table.column_names:
        return np.full((int(table.column("num_frames").to_numpy().sum()), 3), np.nan, np.float32)
    return flat_values(table.column("root_3d")).reshape(-1, 3)


def store_columns(manifest: dict[str, Any]) -> list[str]:
    """The schema's columns this store's shards hold (stores older than ``root_3d`` lack it)."""
    have = set(manifest.get("columns", [])) | set(SCHEMA.names[:-len(OPTIONAL_COLUMNS)])
    return [n for n in SCHEMA.names if n in have]


def table_to_views(table: pa.Table) -> Iterator[StoredView]:
    """Rows of a store table as :class:`StoredView` (for tests, evaluation, inspection)."""
    T = table.column("num_frames").to_numpy()
    starts = np.concatenate([[0], np.cumsum(T)])
    kp = flat_values(table.column("keypoints_2d")).reshape(-1, NUM_JOINTS, 3)
    j3 = flat_values(table.column("joints_3d")).reshape(-1, NUM_JOINTS, 3)
    valid = flat_values(table.column("valid")).astype(bool)
    cams = flat_values(table.column("camera_params")).reshape(-1, CAMERA_ARRAY_SIZE)
    root = root_values(table)
    meta = table.select(["dataset", "subject", "action", "camera", "fps", "has_3d"]).to_pydict()
    for i in range(table.num_rows):
        a, b = starts[i], starts[i + 1]
        yield StoredView(meta["dataset"][i], meta["subject"][i], meta["action"][i],
                         Camera.from_array(cams[i], name=meta["camera"][i]), meta["fps"][i],
                         kp[a:b].copy(), j3[a:b].copy() if meta["has_3d"][i] else None,
                         valid[a:b].copy(), None if np.isnan(root[a:b]).all() else root[a:b].copy())


# ------------------------------------------------------------------------------------------
# splits
# ------------------------------------------------------------------------------------------

def _hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def assign_splits(subject_frames: dict[str, int], train: Sequence[str] = (), val: Sequence[str] = (),
                  test: Sequence[str] = (), holdout: float = HOLDOUT_FRACTION) -> dict[str, list[str]]:
    """Subjects per split — never one subject in two splits.

    Explicit lists win (contract: an empty train list means "every subject not held out").
    With no lists at all the default is deterministic and data-driven: the smallest subjects
    (ties broken by a hash of the name) are held out for val, then test, until each holds
    ``holdout`` of all frames; train always keeps at least one subject.
    """
    subjects = sorted(subject_frames)
    if train or val or test:
        held = set(val) | set(test)
        tr = [s for s in subjects if (s in set(train)) or (not train and s not in held)]
        return {"train": tr, "val": [s for s in subjects if s in set(val)],
                "test": [s for s in subjects if s in set(test)]}
    total = max(1, sum(subject_frames.values()))
    pool = sorted(subjects, key=lambda s: (subject_frames[s], _hash(s)))
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split in ("val", "test"):
        frames = 0
        while pool[1:] and frames < holdout * total:
            s = pool.pop(0)
            out[split].append(s)
            frames += subject_frames[s]
    out["train"] = pool
    return {k: sorted(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


def fingerprint(views: Sequence[Any], **params: Any) -> str:
    """sha256 over every view's metadata and arrays plus the write parameters."""
    h = hashlib.sha256(json.dumps({"schema": SCHEMA_VERSION, **params}, sort_keys=True).encode())
    for v in views:
        kp, j3, valid = _checked(v)
        h.update(json.dumps([v.dataset, v.subject, v.action, v.camera.name, float(v.fps)]).encode())
        h.update(v.camera.to_array().tobytes())
        root = getattr(v, "root_3d", None)
        for a in (kp, j3 if j3 is not None else np.zeros(0, np.float32), valid,
                  np.zeros(0, np.float32) if root is None else np.asarray(root, np.float32)):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", row_group_size=max(1, table.num_rows),
                   write_statistics=["dataset", "subject", "action", "camera", "num_frames"])
    return sink.getvalue()


def _plan_shards(views: Sequence[Any], shard_bytes: int) -> list[tuple[str, list[Any]]]:
    """Group views by (dataset, subject) in input order and pack each group into shards."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for v in views:
        groups.setdefault((v.dataset, v.subject), []).append(v)
    plan = []
    for (ds, subj), vs in sorted(groups.items()):
        part: list[Any] = []
        size = 0
        index = 0
        for v in vs:
            row = np.asarray(v.keypoints_2d).shape[0] * (FRAME_VALUES * 8 + 1)
            if part and size + row > shard_bytes:
                plan.append((f"{SHARD_DIR}/{_safe(ds)}--{_safe(subj)}-{index:05d}.parquet", part))
                part, size, index = [], 0, index + 1
            part.append(v)
            size += row
        plan.append((f"{SHARD_DIR}/{_safe(ds)}--{_safe(subj)}-{index:05d}.parquet", part))
    return plan


def read_manifest(path: str, s3_endpoint: str = "", retries: int = 3) -> dict[str, Any]:
    fs, root = filesystem_for(path, s3_endpoint)
    where = _join(root, MANIFEST)
    try:
        raw = _read_bytes(fs, where, retries=retries, missing_retries=0)
    except FileNotFoundError:
        raise RayposeDataError(f"{path.rstrip('/')}/{MANIFEST}", "no manifest: not a sequence store "
                               "(or an interrupted write; re-run jobs/prepare_data.py)") from None
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise RayposeDataError(f"{path.rstrip('/')}/{MANIFEST}", f"not valid JSON: {e}") from None
    if manifest.get("format") != STORE_FORMAT or manifest.get("schema_version") != SCHEMA_VERSION:
        raise RayposeDataError(f"{path.rstrip('/')}/{MANIFEST}",
                               f"unsupported store format/schema {manifest.get('format')!r} "
                               f"v{manifest.get('schema_version')} (expected v{SCHEMA_VERSION})")
    return manifest


def _store_is_complete(fs: pafs.FileSystem, root: str, manifest: dict[str, Any]) -> bool:
    for shard in manifest["shards"]:
        info = fs.get_file_info(_join(root, shard["path"]))
        if info.type != pafs.FileType.File or info.size != shard["bytes"]:
            return False
    return True


def write_store(views: Iterable[Any], path: str, shard_mb: float = 32.0, *,
                splits: Optional[dict[str, Sequence[str]]] = None, s3_endpoint: str = "",
                extra: Optional[dict[str, Any]] = None,
                on_shard: Optional[Callable[[int, str], None]] = None) -> dict[str, Any]:
    """Write views as a sharded store at ``path`` (local or s3://); returns the manifest.

    ``splits`` (train/val/test subject lists) is recorded in the manifest; missing lists are
    filled by :func:`assign_splits`. ``extra`` is stored verbatim (e.g. source description).
    ``on_shard(index, rel_path)`` runs after each shard is in place (progress; crash tests).
    A store with the same input fingerprint that is complete is left untouched.
    """
    views = list(views)
    if not views:
        raise RayposeDataError(path, "no views to write")
    fs, root = filesystem_for(path, s3_endpoint)
    frames_by_subject: dict[str, int] = {}
    for v in views:
        frames_by_subject[v.subject] = frames_by_subject.get(v.subject, 0) + int(np.shape(v.keypoints_2d)[0])
    s = splits or {}
    split_map = assign_splits(frames_by_subject, s.get("train", ()), s.get("val", ()), s.get("test", ()))
    fp = fingerprint(views, shard_mb=shard_mb, splits=split_map, extra=extra or {})

    old: Optional[dict[str, Any]] = None
    if _exists(fs, _join(root, MANIFEST)):
        try:
            old = read_manifest(path, s3_endpoint)
        except RayposeDataError:
            old = None
        if old is not None and old.get("fingerprint") == fp and _store_is_complete(fs, root, old):
            return old
        fs.delete_file(_join(root, MANIFEST))  # the store is invisible until rewritten

    shards = []
    for index, (rel, part) in enumerate(_plan_shards(views, int(shard_mb * 2**20))):
        data = _parquet_bytes(views_to_table(part))
        _atomic_write(fs, root, rel, data)
        shards.append({"path": rel, "dataset": part[0].dataset, "subject": part[0].subject,
                       "rows": len(part), "frames": int(sum(np.shape(v.keypoints_2d)[0] for v in part)),
                       "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        if on_shard is not None:
            on_shard(index, rel)

    manifest = _manifest(views, shards, split_map, fp, shard_mb, extra or {})
    _atomic_write(fs, root, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _remove_stale(fs, root, {sh["path"] for sh in shards}, old)
    return manifest


def _manifest(views: Sequence[Any], shards: list[dict], split_map: dict[str, list[str]], fp: str,
              shard_mb: float, extra: dict[str, Any]) -> dict[str, Any]:
    datasets: dict[str, dict[str, Any]] = {}
    for v in views:
        d = datasets.setdefault(v.dataset, {"rows": 0, "frames": 0, "rows_with_3d": 0,
                                            "subjects": set(), "fps": set()})
        d["rows"] += 1
        d["frames"] += int(np.shape(v.keypoints_2d)[0])
        d["rows_with_3d"] += v.joints_3d is not None
        d["subjects"].add(v.subject)
        d["fps"].add(float(v.fps))
    for d in datasets.values():
        d["subjects"], d["fps"] = sorted(d["subjects"]), sorted(d["fps"])
    subjects: dict[str, dict[str, int]] = {}
    for sh in shards:
        e = subjects.setdefault(sh["subject"], {"rows": 0, "frames": 0})
        e["rows"] += sh["rows"]
        e["frames"] += sh["frames"]
    return {"format": STORE_FORMAT, "schema_version": SCHEMA_VERSION, "fingerprint": fp,
            "joints": NUM_JOINTS, "shard_mb": shard_mb, "columns": list(SCHEMA.names),
            "rows": sum(sh["rows"] for sh in shards), "frames": sum(sh["frames"] for sh in shards),
            "bytes": sum(sh["bytes"] for sh in shards), "splits": split_map,
            "datasets": datasets, "subjects": subjects, "shards": shards, "extra": extra}


def _remove_stale(fs: pafs.FileSystem, root: str, keep: set[str], old: Optional[dict[str, Any]]) -> None:
    """Drop shards of an older manifest that the new one does not list, and stray temp files."""
    for sh in (old or {}).get("shards", []):
        if sh["path"] not in keep and _exists(fs, _join(root, sh["path"])):
            fs.delete_file(_join(root, sh["path"]))
    if fs.get_file_info(_join(root, TMP_DIR)).type == pafs.FileType.Directory:
        fs.delete_dir_contents(_join(root, TMP_DIR), missing_dir_ok=True)


# ------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------

def shard_paths(path: str, manifest: dict[str, Any], subjects: Optional[Iterable[str]] = None) -> list[str]:
    """Paths (inside the filesystem of :func:`filesystem_for`) of the shards of ``subjects``."""
    root = path[len("s3://"):].rstrip("/") if path.startswith("s3://") else os.path.abspath(path)
    keep = None if subjects is None else set(subjects)
    return [_join(root, sh["path"]) for sh in manifest["shards"] if keep is None or sh["subject"] in keep]


def check_shard_sizes(path: str, manifest: dict[str, Any], s3_endpoint: str = "",
                      subjects: Optional[Iterable[str]] = None) -> None:
    """Cheap integrity check (one stat per shard) before a streaming read."""
    fs, root = filesystem_for(path, s3_endpoint)
    keep = None if subjects is None else set(subjects)
    for sh in manifest["shards"]:
        if keep is not None and sh["subject"] not in keep:
            continue
        info = fs.get_file_info(_join(root, sh["path"]))
        if info.type != pafs.FileType.File:
            raise RayposeDataError(f"{path.rstrip('/')}/{sh['path']}", "shard listed in the manifest is missing")
        if info.size != sh["bytes"]:
            raise RayposeDataError(f"{path.rstrip('/')}/{sh['path']}",
                                   f"shard is {info.size} bytes, the manifest says {sh['bytes']} (truncated or replaced)")


def read_shard_table(path: str, shard: dict[str, Any], s3_endpoint: str = "", verify: bool = True,
                     retries: int = 8, fs: Optional[pafs.FileSystem] = None) -> pa.Table:
    """One shard as an Arrow table, verified against the manifest's size and sha256.

    Network errors are retried (``retries`` times, exponential backoff ≤ 5 s) and the whole
    shard is re-read, so a flaky or restarting S3 server costs time, never rows.
    """
    fsys, root = filesystem_for(path, s3_endpoint)
    fs = fs or fsys
    name = f"{path.rstrip('/')}/{shard['path']}"
    try:
        data = _read_bytes(fs, _join(root, shard["path"]), retries=retries)
    except FileNotFoundError:
        raise RayposeDataError(name, "shard listed in the manifest is missing") from None
    if verify and len(data) != shard["bytes"]:
        raise RayposeDataError(name, f"shard is {len(data)} bytes, the manifest says {shard['bytes']} (truncated?)")
    if verify and hashlib.sha256(data).hexdigest() != shard["sha256"]:
        raise RayposeDataError(name, "sha256 checksum mismatch (corrupt shard)")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as e:
        raise RayposeDataError(name, f"not a readable Parquet shard: {e}") from None
    if table.num_rows != shard["rows"]:
        raise RayposeDataError(name, f"{table.num_rows} rows, the manifest says {shard['rows']}")
    return table


def read_store(path: str, s3_endpoint: str = "", subjects: Optional[Iterable[str]] = None,
               verify: bool = True, retries: int = 8) -> Iterator[StoredView]:
    """Every row of a store, shard by shard in manifest order (tests, evaluation).

    A shard is yielded only after it was read whole and verified, so a retried read never
    duplicates or drops a row. A corrupt shard raises :class:`RayposeDataError` naming it.
    """
    manifest = read_manifest(path, s3_endpoint, retries=retries)
    fs, _ = filesystem_for(path, s3_endpoint)
    keep = None if subjects is None else set(subjects)
    for shard in manifest["shards"]:
        if keep is None or shard["subject"] in keep:
            yield from table_to_views(read_shard_table(path, shard, s3_endpoint, verify, retries, fs))
