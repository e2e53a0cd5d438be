"""Ray Data streams of fixed-length chunks, split by subject, mixed by weight.

Flow: store shards (``read_parquet``, local or S3, ``shuffle='files'`` for train) or views
built in memory from a raw source → ``map_batches`` (pyarrow in, numpy out, no per-row
Python) turns a batch of whole-sequence rows into fixed-length chunks → the trainer's
dataset shards → :func:`iter_device_batches` (``iter_torch_batches`` with prefetch) → dicts
of tensors on the device, where :mod:`raypose.data.clips` cuts the clips.

Chunks (why fixed length): the device gets dense (B, L, 17, 3) tensors it can index-gather
clips from. A sequence longer than L = ``chunk_frames`` is cut into chunks that overlap by
the clip context ``c = (num_frames − 1) / 2 · stride`` on each side: every chunk *owns* the
centres ``[centre_start, centre_stop)`` (each sequence frame is owned by exactly one chunk)
and carries the real neighbouring frames as context, so a clip centred on an owned frame
sees true data, and edge replication happens only at true sequence ends. Frames past
``length`` repeat the last frame and have ``valid`` False.

Splits are by subject (never by frame): explicit ``data.train/val/test_subjects`` win;
otherwise a store's manifest splits, otherwise :func:`raypose.data.store.assign_splits`
(the smallest subjects are held out for val then test, ~10 % of frames each).

Mixing weights (train only): source i with weight w_i and F_i training frames is repeated
``floor(f_i)`` times plus a ``frac(f_i)`` random sample, with ``f_i = (w_i / Σw) · ΣF / F_i``:
an epoch keeps roughly the total size and each source contributes its weight's share of
chunks. One source, or weights proportional to size, means f = 1 (no resampling).
``max_sequences`` caps the rows (views) read per source and split.

Label scarcity (``label_fraction`` < 1): the train split keeps a fixed, seeded subset of whole
sequences (subject, action) of each source — :func:`labelled_sequences` — so a study can
pretrain on every sequence's 2D and fine-tune on the 3D of a few.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raypose.cameras import CAMERA_ARRAY_SIZE
from raypose.config import DataConfig, SourceConfig
from raypose.errors import ConfigError
from raypose.data import store
from raypose.data.augment import StillNoise, still_to_sequence

SPLITS = ("train", "val", "test")
CHUNK_COLUMNS = ("keypoints_2d", "joints_3d", "valid", "camera", "length", "has_3d",
                 "centre_start", "centre_stop", "root_3d")
#: Rows (whole sequences) per chunking call: bounds the memory of one map_batches task.
ROWS_PER_CHUNK_TASK = 16


def torch_dtypes() -> dict[str, Any]:
    import torch

    return {"keypoints_2d": torch.float32, "joints_3d": torch.float32, "valid": torch.bool,
            "camera": torch.float32, "length": torch.int64, "has_3d": torch.bool,
            "centre_start": torch.int64, "centre_stop": torch.int64, "root_3d": torch.float32}


def clip_context(data_cfg: DataConfig) -> int:
    """Frames a clip reaches on either side of its predicted frame (the longer side).

    A causal clip reaches ``(F − 1)·s`` frames back and none ahead; chunks carry the same context
    on both sides (a few unused frames ahead) so one layout serves both kinds of clip.
    """
    before = (data_cfg.num_frames - 1) * data_cfg.stride
    return before if getattr(data_cfg, "causal", False) else before // 2


# ------------------------------------------------------------------------------------------
# rows → fixed-length chunks (pure numpy)
# ------------------------------------------------------------------------------------------

def chunk_layout(num_frames: np.ndarray, chunk_frames: int, context: int) -> dict[str, np.ndarray]:
    """Chunk boundaries for sequences of ``num_frames``: row, first frame, length, owned centres.

    A sequence of T ≤ L frames is one chunk. Longer ones: the first chunk owns ``[0, L − c)``,
    the next ones ``own = L − 2c`` centres each, every chunk holding c frames of context.
    """
    L, c = int(chunk_frames), int(context)
    own = L - 2 * c
    if own < 1:
        raise ConfigError(f"data.chunk_frames ({L}) must exceed the clip span 2·{c} frames "
                          "(num_frames·stride): raise chunk_frames")
    T = np.asarray(num_frames, dtype=np.int64)
    k = np.where(T <= L, 1, 1 + np.ceil(np.maximum(T - (L - c), 0) / own).astype(np.int64))
    row = np.repeat(np.arange(T.shape[0]), k)
    j = np.arange(row.shape[0]) - np.repeat(np.cumsum(k) - k, k)
    Tr = T[row]
    single = Tr <= L
    c0 = np.where(j == 0, 0, (L - c) + (j - 1) * own)
    c1 = np.where(single, Tr, np.minimum(Tr, np.where(j == 0, L - c, c0 + own)))
    start = np.where(single | (j == 0), 0, c0 - c)
    stop = np.where(single, Tr, np.minimum(Tr, c1 + c))
    return {"row": row, "start": start, "length": stop - start,
            "centre_start": c0 - start, "centre_stop": c1 - start}


def chunk_table(table: pa.Table, chunk_frames: int, context: int) -> dict[str, np.ndarray]:
    """Store rows (whole sequences) → dict of fixed-length chunk arrays (see module doc)."""
    L = int(chunk_frames)
    T = table.column("num_frames").to_numpy().astype(np.int64)
    lay = chunk_layout(T, L, context)
    n = lay["row"].shape[0]
    if n == 0:
        return {"keypoints_2d": np.zeros((0, L, store.NUM_JOINTS, 3), np.float32),
                "joints_3d": np.zeros((0, L, store.NUM_JOINTS, 3), np.float32),
                "valid": np.zeros((0, L), bool), "camera": np.zeros((0, CAMERA_ARRAY_SIZE), np.float32),
                "length": np.zeros(0, np.int64), "has_3d": np.zeros(0, bool),
                "centre_start": np.zeros(0, np.int64), "centre_stop": np.zeros(0, np.int64),
                "root_3d": np.zeros((0, L, 3), np.float32)}
    row_start = np.concatenate([[0], np.cumsum(T)[:-1]])
    offs = np.arange(L)[None, :]
    idx = (row_start[lay["row"]] + lay["start"])[:, None] + np.minimum(offs, lay["length"][:, None] - 1)
    kp = store.flat_values(table.column("keypoints_2d")).reshape(-1, store.NUM_JOINTS, 3)
    j3 = store.flat_values(table.column("joints_3d")).reshape(-1, store.NUM_JOINTS, 3)
    valid = store.flat_values(table.column("valid")).astype(bool)
    cams = store.flat_values(table.column("camera_params")).reshape(-1, CAMERA_ARRAY_SIZE)
    has_3d = table.column("has_3d").to_numpy(zero_copy_only=False).astype(bool)
    root = store.root_values(table)  # NaN where unknown (and for stores written before it)
    return {"keypoints_2d": kp[idx], "joints_3d": j3[idx], "root_3d": root[idx],
            "valid": valid[idx] & (offs < lay["length"][:, None]),
            "camera": cams[lay["row"]].astype(np.float32), "length": lay["length"],
            "has_3d": has_3d[lay["row"]], "centre_start": lay["centre_start"],
            "centre_stop": lay["centre_stop"]}


def _chunk_batch(batch: pa.Table, chunk_frames: int, context: int) -> dict[str, np.ndarray]:
    return chunk_table(batch, chunk_frames, context)


# ------------------------------------------------------------------------------------------
# sources → per-split rows
# ------------------------------------------------------------------------------------------

def _explicit(data_cfg: DataConfig) -> bool:
    return bool(data_cfg.train_subjects or data_cfg.val_subjects or data_cfg.test_subjects)


def _splits(data_cfg: DataConfig, subject_frames: dict[str, int],
            manifest_splits: Optional[dict[str, list[str]]] = None) -> dict[str, list[str]]:
    if _explicit(data_cfg):
        return store.assign_splits(subject_frames, data_cfg.train_subjects,
                                   data_cfg.val_subjects, data_cfg.test_subjects)
    if manifest_splits:
        return {k: [s for s in manifest_splits.get(k, []) if s in subject_frames] for k in SPLITS}
    return store.assign_splits(subject_frames)


def source_subject_frames(src: SourceConfig, data_cfg: DataConfig) -> dict[str, int]:
    """Frames per subject of one source: a store's manifest, or a raw source's records."""
    if src.format == "store":
        manifest = store.read_manifest(src.path, data_cfg.s3_endpoint)
        return {s: int(e["frames"]) for s, e in manifest["subjects"].items()}
    from raypose.data.sources import read_source

    frames: dict[str, int] = {}
    for rec in read_source(src, data_cfg.target_fps, s3_endpoint=data_cfg.s3_endpoint):
        frames[rec.subject] = frames.get(rec.subject, 0) + rec.num_frames
    return frames


def _source_label(src: SourceConfig) -> str:
    return f"{src.name} ({src.path or 'embedded mocap'})"


def check_subject_names(data_cfg: DataConfig, per_source: dict[str, dict[str, int]]) -> list[str]:
    """Every subject any source has (sorted); a split list naming one no source has raises
    :class:`ConfigError` listing the known subjects. ``per_source``: label → frames per subject."""
    known = sorted({s for frames in per_source.values() for s in frames})
    for split in SPLITS:
        names = getattr(data_cfg, f"{split}_subjects")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(
                f"data.{split}_subjects names subjects no source has: {', '.join(map(str, unknown))}; "
                f"known subjects: {', '.join(known) or '(none)'} (sources: {', '.join(per_source)})")
    return known


def check_splits(data_cfg: DataConfig) -> dict[str, list[str]]:
    """The subjects of every split over all sources together, or a :class:`ConfigError`.

    Why: split lists are filtered per source (a subject may live in only one of several
    sources), so a misspelt or foreign name (H36M's S1 against the embedded mocap) would
    otherwise vanish silently and a run could train on nothing. A name is unknown only if no
    configured source has it; an empty training split is refused before Ray starts.
    """
    per_source = {_source_label(src): source_subject_frames(src, data_cfg) for src in data_cfg.sources}
    known = check_subject_names(data_cfg, per_source)
    out: dict[str, list[str]] = {k: [] for k in SPLITS}
    for src, frames in zip(data_cfg.sources, per_source.values()):
        manifest = store.read_manifest(src.path, data_cfg.s3_endpoint) if src.format == "store" else {}
        for split, subjects in _splits(data_cfg, frames, manifest.get("splits")).items():
            out[split] = sorted(set(out[split]) | set(subjects))
    if not out["train"]:
        raise ConfigError(
            f"the training split is empty: train_subjects={data_cfg.train_subjects}, "
            f"val_subjects={data_cfg.val_subjects}, test_subjects={data_cfg.test_subjects} leave "
            f"no subject of {', '.join(known) or '(no subjects at all)'} for training")
    return out


def check_root_3d(data_cfg: DataConfig) -> None:
    """A trajectory head needs camera-space root positions: refuse, naming them, sources that
    cannot give any (stores written before ``root_3d``; camera-frame-only formats)."""
    lacking = []
    for src in data_cfg.sources:
        if src.format == "store":
            manifest = store.read_manifest(src.path, data_cfg.s3_endpoint)
            if "root_3d" not in store.store_columns(manifest):
                lacking.append(f"{_source_label(src)}: a store written before root positions were "
                               "stored (re-run `raypose prepare` on its raw files)")
        elif src.format in ("coco", "mpi_inf_3dhp"):
            lacking.append(f"{_source_label(src)}: camera-frame 3D without the root's position")
    if lacking:
        raise ConfigError("model.trajectory needs each frame's camera-space root position, which "
                          "these sources do not have: " + "; ".join(lacking))


def raw_views(src: SourceConfig, data_cfg: DataConfig, seed: int, index: int = 0,
              still_noise: Optional[StillNoise] = None) -> list[Any]:
    """Views of a raw source, built in memory by the readers (deterministic for a seed).

    One-frame records (COCO stills) go through APTPose's noising pipeline first
    (:mod:`raypose.data.augment`; default: replicated to ``data.num_frames`` frames).
    """
    from raypose.data.sources import read_source, views

    noise = still_noise or StillNoise(num_frames=data_cfg.num_frames)
    rng = np.random.default_rng([seed, index])
    out = []
    for rec in read_source(src, data_cfg.target_fps):
        rec = still_to_sequence(rec, noise, rng)
        out.extend(views(rec, rng, src.virtual_cameras, data_cfg.rig))
    return out


def labelled_sequences(keys: Any, fraction: float, seed: int) -> set[tuple[str, str]]:
    """The (subject, action) sequences of ``keys`` whose labels a run at ``fraction`` uses:
    ``ceil(fraction · n)`` of the n distinct sequences (at least one), in a seeded random order
    that does not depend on the order ``keys`` come in."""
    unique = sorted({(str(s), str(a)) for s, a in keys})
    if fraction >= 1.0 or not unique:
        return set(unique)
    order = np.random.default_rng([int(seed), 0x1abe1]).permutation(len(unique))
    count = max(1, math.ceil(fraction * len(unique) - 1e-9))
    return {unique[i] for i in order[:count]}


def _keep_sequences(table: pa.Table, keep: set[tuple[str, str]]) -> pa.Table:
    """Rows of ``table`` whose (subject, action) is in ``keep``."""
    subjects, actions = table.column("subject").to_pylist(), table.column("action").to_pylist()
    mask = pa.array([(s, a) in keep for s, a in zip(subjects, actions)], type=pa.bool_())
    return table.filter(mask)


def _store_labelled(src: SourceConfig, shards: list[dict], data_cfg: DataConfig, seed: int
                    ) -> tuple[set[tuple[str, str]], int]:
    """The labelled train sequences of a store and their frames (reads only the shards' key
    columns)."""
    import pyarrow.parquet as pq

    fs, root = store.filesystem_for(src.path, data_cfg.s3_endpoint)
    rows: list[tuple[str, str, int]] = []
    for sh in shards:
        t = pq.read_table(f"{root}/{sh['path']}", filesystem=fs,
                          columns=["subject", "action", "num_frames"]).to_pydict()
        rows.extend(zip(t["subject"], t["action"], t["num_frames"]))
    keep = labelled_sequences([(s, a) for s, a, _ in rows], data_cfg.label_fraction, seed)
    return keep, int(sum(n for s, a, n in rows if (s, a) in keep))


def _view_frames(vs: list[Any]) -> dict[str, int]:
    frames: dict[str, int] = {}
    for v in vs:
        frames[v.subject] = frames.get(v.subject, 0) + int(np.shape(v.keypoints_2d)[0])
    return frames


def _raw_split_tables(src: SourceConfig, data_cfg: DataConfig, seed: int, index: int,
                      vs: Optional[list[Any]] = None) -> dict[str, list[pa.Table]]:
    vs = raw_views(src, data_cfg, seed, index) if vs is None else vs
    frames = _view_frames(vs)
    splits = _splits(data_cfg, frames)
    out: dict[str, list[pa.Table]] = {}
    order = np.random.default_rng([seed, index, 7]).permutation(len(vs))
    for split in SPLITS:
        members = set(splits[split])
        rows = [v for v in vs if v.subject in members]
        if split == "train" and data_cfg.label_fraction < 1.0:
            keep = labelled_sequences([(v.subject, v.action) for v in rows], data_cfg.label_fraction, seed)
            rows = [v for v in rows if (v.subject, v.action) in keep]
        if data_cfg.max_sequences:
            rows = rows[: data_cfg.max_sequences]
        if split == "train" and data_cfg.shuffle_files:
            # the views of one sequence are neighbours in reading order: spread them over blocks
            rank = {id(v): r for r, v in enumerate(vs[i] for i in order)}
            rows.sort(key=lambda v: rank[id(v)])
        out[split] = [store.views_to_table(rows[i:i + ROWS_PER_CHUNK_TASK])
                      for i in range(0, len(rows), ROWS_PER_CHUNK_TASK)]
    return out


def _store_split_shards(src: SourceConfig, data_cfg: DataConfig) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    manifest = store.read_manifest(src.path, data_cfg.s3_endpoint)
    frames = {s: e["frames"] for s, e in manifest["subjects"].items()}
    splits = _splits(data_cfg, frames, manifest.get("splits"))
    out = {}
    for split in SPLITS:
        members = set(splits[split])
        shards, rows = [], 0
        for sh in manifest["shards"]:
            if sh["subject"] in members and not (data_cfg.max_sequences and rows >= data_cfg.max_sequences):
                shards.append(sh)
                rows += sh["rows"]
        out[split] = shards
    return manifest, out


# ------------------------------------------------------------------------------------------
# Ray Data
# ------------------------------------------------------------------------------------------

def _empty_rows():
    import ray.data

    return ray.data.from_arrow(store.views_to_table([]))


def _store_rows(src: SourceConfig, data_cfg: DataConfig, seed: int) -> dict[str, tuple[Any, int]]:
    import ray.data
    from ray.data import FileShuffleConfig

    manifest, per_split = _store_split_shards(src, data_cfg)
    fs, root = store.filesystem_for(src.path, data_cfg.s3_endpoint)
    out = {}
    for split, shards in per_split.items():
        frames = sum(sh["frames"] for sh in shards)
        if not shards:
            out[split] = (_empty_rows(), 0)
            continue
        store.check_shard_sizes(src.path, {"shards": shards}, data_cfg.s3_endpoint)
        shuffle = FileShuffleConfig(seed=seed) if (split == "train" and data_cfg.shuffle_files) else None
        ds = ray.data.read_parquet([f"{root}/{sh['path']}" for sh in shards], filesystem=fs,
                                   shuffle=shuffle, columns=store.store_columns(manifest))
        if split == "train" and data_cfg.label_fraction < 1.0:
            keep, frames = _store_labelled(src, shards, data_cfg, seed)
            ds = ds.map_batches(_keep_sequences, batch_format="pyarrow", fn_kwargs={"keep": keep})
        if data_cfg.max_sequences:
            ds = ds.limit(data_cfg.max_sequences)
        out[split] = (ds, frames)
    return out


def _raw_rows(src: SourceConfig, data_cfg: DataConfig, seed: int, index: int) -> dict[str, tuple[Any, int]]:
    import ray.data

    out = {}
    for split, tables in _raw_split_tables(src, data_cfg, seed, index).items():
        if not tables:
            out[split] = (_empty_rows(), 0)
            continue
        ds = ray.data.from_arrow(tables)
        if split == "train" and data_cfg.shuffle_files:
            ds = ds.randomize_block_order(seed=seed)
        out[split] = (ds, int(sum(pc.sum(t.column("num_frames")).as_py() for t in tables)))
    return out


def mixing_factors(weights: list[float], frames: list[int]) -> list[float]:
    """Per-source multiplicity f_i = (w_i / Σw) · ΣF / F_i (0 for a source without frames)."""
    total_w, total_f = sum(weights), sum(frames)
    return [0.0 if f == 0 else (w / total_w) * total_f / f for w, f in zip(weights, frames)]


def _weighted(ds: Any, factor: float, seed: int) -> Any:
    whole, frac = int(math.floor(factor + 1e-9)), factor - math.floor(factor + 1e-9)
    parts = [ds] * whole
    if frac > 1e-6:
        parts.append(ds.random_sample(frac, seed=seed))
    if not parts:
        return ds.limit(0)
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def build_datasets(data_cfg: DataConfig, seed: int = 0, context: Optional[int] = None) -> dict[str, Any]:
    """``{'train', 'val', 'test'}`` → Ray Datasets of fixed-length chunks (columns CHUNK_COLUMNS)."""
    ctx = clip_context(data_cfg) if context is None else int(context)
    chunk_layout(np.zeros(0, np.int64), data_cfg.chunk_frames, ctx)  # validates the sizes early
    per_source = []
    for i, src in enumerate(data_cfg.sources):
        rows = _store_rows(src, data_cfg, seed) if src.format == "store" else _raw_rows(src, data_cfg, seed, i)
        per_source.append(rows)

    def chunks(ds: Any) -> Any:
        return ds.map_batches(_chunk_batch, batch_format="pyarrow", batch_size=ROWS_PER_CHUNK_TASK,
                              fn_kwargs={"chunk_frames": data_cfg.chunk_frames, "context": ctx})

    out = {}
    for split in SPLITS:
        dss = [chunks(rows[split][0]) for rows in per_source]
        frames = [rows[split][1] for rows in per_source]
        if split == "train" and len(dss) > 1:
            factors = mixing_factors([s.weight for s in data_cfg.sources], frames)
            dss = [_weighted(ds, f, seed + i) for i, (ds, f) in enumerate(zip(dss, factors))]
            frames = [f * k for f, k in zip(frames, factors)]
        ds = dss[0].union(*dss[1:]) if len(dss) > 1 else dss[0]
        if 0 < chunk_megabytes(sum(frames), data_cfg, ctx) <= data_cfg.cache_mb:
            ds = ds.materialize()
        out[split] = ds
    return out


#: Bytes of one chunk frame: 2D + confidence and 3D (float32 × 17 × 3 each), ``valid``, the root.
CHUNK_FRAME_BYTES = 2 * store.NUM_JOINTS * 3 * 4 + 1 + 3 * 4


def chunk_megabytes(frames: float, data_cfg: DataConfig, context: int) -> float:
    """Approximate size of a split's chunks: its frames, plus the context every chunk repeats."""
    own = max(1, data_cfg.chunk_frames - 2 * context)
    return frames * CHUNK_FRAME_BYTES * data_cfg.chunk_frames / own / 1e6


def iter_device_batches(shard: Any, data_cfg: DataConfig, device: Any = "auto",
                        drop_last: bool = False, shuffle: bool = False,
                        seed: Optional[int] = None) -> Iterator[dict[str, Any]]:
    """Dicts of chunk tensors on ``device`` from a Dataset or a ``get_dataset_shard`` iterator.

    ``shuffle`` (training) draws each batch from a local buffer of ``data.shuffle_buffer`` chunks,
    so one step's chunks come from many sequences and views rather than from the neighbouring
    chunks of a few (correlated batches trained measurably worse at equal samples).
    """
    if hasattr(shard, "select_columns"):
        shard = shard.select_columns(list(CHUNK_COLUMNS))
    buffer = data_cfg.shuffle_buffer if shuffle and data_cfg.shuffle_buffer > 0 else None
    yield from shard.iter_torch_batches(batch_size=data_cfg.batch_size,
                                        prefetch_batches=data_cfg.prefetch_batches,
                                        dtypes=torch_dtypes(), device=device, drop_last=drop_last,
                                        local_shuffle_buffer_size=buffer,
                                        local_shuffle_seed=seed if buffer else None)


def memory_passes(chunks: dict[str, Any], batch_size: int, shuffle: bool, seed: int
                  ) -> Callable[[], Iterator[dict[str, Any]]]:
    """A ``make_iter`` over chunk tensors held in memory: each call is one pass of batches
    (a fresh permutation of all chunks per pass when ``shuffle``), on the chunks' device."""
    import torch

    n = int(next(iter(chunks.values())).shape[0])
    device = next(iter(chunks.values())).device
    passes = iter(range(1 << 62))

    def make_iter() -> Iterator[dict[str, Any]]:
        if shuffle:
            g = torch.Generator().manual_seed(int(seed) * 1_000_003 + next(passes))
            order = torch.randperm(n, generator=g).to(device)
        else:
            order = torch.arange(n, device=device)
        for i in range(0, n, batch_size):
            sel = order[i:i + batch_size]
            yield {k: v.index_select(0, sel) for k, v in chunks.items()}

    return make_iter


def _batch_bytes(batch: dict[str, Any]) -> int:
    return sum(int(t.numel()) * t.element_size() for t in batch.values())


class CachedPasses:
    """Passes over a Ray Data shard that stop touching Ray once the shard is known to fit.

    The first pass streams from ``stream()`` and keeps the batches it yields while they total
    at most ``cap_mb``. When that pass ran to its end, the kept batches become one set of
    tensors and every later pass comes from :func:`memory_passes` (re-shuffled in memory when
    ``shuffle``), so a small dataset no longer starts a Ray Data execution per pass. A pass
    the consumer left early (validation stops at ``val_max_clips``) keeps its prefix: later
    passes replay it and stream on past it only if asked for more. Too big: every pass streams.
    """

    def __init__(self, stream: Callable[[], Iterator[dict[str, Any]]], cap_mb: float,
                 batch_size: int, shuffle: bool, seed: int):
        self.stream, self.batch_size, self.shuffle, self.seed = stream, batch_size, shuffle, seed
        self.cap_bytes = int(cap_mb * 1e6)
        self.too_big = self.cap_bytes <= 0
        self.prefix: list[dict[str, Any]] = []
        self.in_memory: Optional[Callable[[], Iterator[dict[str, Any]]]] = None

    @property
    def cached(self) -> bool:
        return self.in_memory is not None

    def __call__(self) -> Iterator[dict[str, Any]]:
        if self.in_memory is not None:
            return self.in_memory()
        if self.too_big:
            return self.stream()
        return self._replay_then_record()

    def _replay_then_record(self) -> Iterator[dict[str, Any]]:
        import itertools

        kept = list(self.prefix)
        yield from kept
        size = sum(_batch_bytes(b) for b in kept)
        for batch in itertools.islice(self.stream(), len(kept), None):
            if not self.too_big:
                size += _batch_bytes(batch)
                if size > self.cap_bytes:
                    self.too_big, kept, self.prefix = True, [], []
                else:
                    kept.append(batch)
                    self.prefix = kept
            yield batch
        if not self.too_big and kept:  # the whole pass was seen
            import torch

            chunks = {k: torch.cat([b[k] for b in kept]) for k in kept[0]}
            self.prefix = []
            self.in_memory = memory_passes(chunks, self.batch_size, self.shuffle, self.seed)


# ------------------------------------------------------------------------------------------
# without Ray
# ------------------------------------------------------------------------------------------

def split_tables(data_cfg: DataConfig, split: str, seed: int = 0) -> list[pa.Table]:
    """Rows of ``split`` from every source as Arrow tables (verified shards; no Ray).

    Split lists naming subjects no source has raise the same :class:`ConfigError` as
    :func:`check_splits` (checked over all sources, before any shard is read): an evaluation
    must not silently run on fewer subjects than were asked for.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    per_source: dict[str, dict[str, int]] = {}
    plans = []
    for i, src in enumerate(data_cfg.sources):
        if src.format == "store":
            manifest, per_split = _store_split_shards(src, data_cfg)
            per_source.setdefault(_source_label(src), {}).update(
                {s: int(e["frames"]) for s, e in manifest["subjects"].items()})
            plans.append((src, per_split[split]))
        else:
            vs = raw_views(src, data_cfg, seed, i)
            per_source.setdefault(_source_label(src), {}).update(_view_frames(vs))
            plans.append((src, _raw_split_tables(src, data_cfg, seed, i, vs)[split]))
    check_subject_names(data_cfg, per_source)
    tables = []
    for src, part in plans:
        if src.format == "store":
            fs, _ = store.filesystem_for(src.path, data_cfg.s3_endpoint)
            ts = [store.read_shard_table(src.path, sh, data_cfg.s3_endpoint, fs=fs) for sh in part]
            if ts and split == "train" and data_cfg.label_fraction < 1.0:
                whole = pa.concat_tables(ts)
                keep = labelled_sequences(zip(whole.column("subject").to_pylist(),
                                              whole.column("action").to_pylist()),
                                          data_cfg.label_fraction, seed)
                ts = [_keep_sequences(whole, keep)]
            if ts and data_cfg.max_sequences:
                ts = [pa.concat_tables(ts).slice(0, data_cfg.max_sequences)]
        else:
            ts = part
        tables.extend(ts)
    return tables


def local_batches(data_cfg: DataConfig, split: str = "val", device: Any = "cpu", seed: int = 0,
                  context: Optional[int] = None, shuffle: bool = False) -> Iterator[dict[str, Any]]:
    """The same chunk dicts as :func:`iter_device_batches`, without Ray (evaluation, bench).

    Chunks come in source/shard/row order (``shuffle`` permutes them with ``seed``); mixing
    weights do not apply here.
    """
    import torch

    ctx = clip_context(data_cfg) if context is None else int(context)
    parts = [chunk_table(t, data_cfg.chunk_frames, ctx) for t in split_tables(data_cfg, split, seed)]
    if not parts:
        return
    allc = {k: np.concatenate([p[k] for p in parts]) for k in CHUNK_COLUMNS}
    n = allc["length"].shape[0]
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    dtypes = torch_dtypes()
    for i in range(0, n, data_cfg.batch_size):
        sel = order[i:i + data_cfg.batch_size]
        yield {k: torch.as_tensor(allc[k][sel]).to(device=device, dtype=dtypes[k]) for k in CHUNK_COLUMNS}
