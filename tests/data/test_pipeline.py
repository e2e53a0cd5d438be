"""Chunking, splits by subject and Ray Data streaming from a local and an S3 store."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from raypose.config import DataConfig, SourceConfig
from raypose.data import pipeline, store
from raypose.errors import ConfigError


@pytest.fixture(scope="module")
def mocap_views():
    from raypose.data.sources import read_source, views

    rng = np.random.default_rng(0)
    return [v for r in read_source(SourceConfig(), 50.0) for v in views(r, rng, 2)]


@pytest.mark.parametrize("L,c", [(100, 13), (64, 0), (243, 121), (1024, 121)])
def test_chunk_layout_owns_every_frame_once_with_full_context(L, c):
    T = np.array([1, 5, L - 1, L, L + 1, 2 * L, 3 * L + 7, 1000])
    lay = pipeline.chunk_layout(T, L, c)
    assert (lay["length"] <= L).all() and (lay["length"] >= 1).all()
    for i, t in enumerate(T):
        mine = lay["row"] == i
        owned = np.concatenate([np.arange(a, b) + s for a, b, s in
                                zip(lay["centre_start"][mine], lay["centre_stop"][mine], lay["start"][mine])])
        np.testing.assert_array_equal(owned, np.arange(t))   # every frame once, in order
        for s, n, a, b in zip(lay["start"][mine], lay["length"][mine], lay["centre_start"][mine], lay["centre_stop"][mine]):
            # a clip centred on any owned frame finds its whole context inside the chunk,
            # except where the true sequence ends (edge replication is then correct)
            assert s == 0 or a >= c
            assert s + n == t or b - 1 + c <= n - 1
    with pytest.raises(ConfigError, match="chunk_frames"):
        pipeline.chunk_layout(T, 20, 10)


def test_chunk_table_gathers_the_source_frames(mocap_views):
    table = store.views_to_table(mocap_views)
    L, c = 300, 13
    ch = pipeline.chunk_table(table, L, c)
    lay = pipeline.chunk_layout(table.column("num_frames").to_numpy(), L, c)
    assert ch["keypoints_2d"].shape == (len(lay["row"]), L, 17, 3) and ch["keypoints_2d"].dtype == np.float32
    for k in range(len(lay["row"])):
        v = mocap_views[lay["row"][k]]
        s, n = lay["start"][k], lay["length"][k]
        np.testing.assert_array_equal(ch["keypoints_2d"][k, :n], v.keypoints_2d[s:s + n])
        np.testing.assert_array_equal(ch["joints_3d"][k, :n], v.joints_3d[s:s + n])
        np.testing.assert_array_equal(ch["keypoints_2d"][k, n:], np.broadcast_to(v.keypoints_2d[s + n - 1], (L - n, 17, 3)))
        assert ch["valid"][k, :n].all() and not ch["valid"][k, n:].any()
        np.testing.assert_allclose(ch["camera"][k], v.camera.to_array().astype(np.float32))
    owned = (ch["centre_stop"] - ch["centre_start"]).sum()
    assert owned == sum(len(v.keypoints_2d) for v in mocap_views)


def test_mixing_factors_give_each_source_its_weight_share():
    f = pipeline.mixing_factors([3.0, 1.0], [1000, 1000])
    assert f == pytest.approx([1.5, 0.5])
    f = pipeline.mixing_factors([1.0, 1.0], [9000, 1000])      # small source repeated
    assert f == pytest.approx([10000 / 2 / 9000, 5.0])
    assert pipeline.mixing_factors([2.0, 1.0], [2000, 1000]) == pytest.approx([1.0, 1.0])


def _collect(batches) -> dict[str, np.ndarray]:
    parts = list(batches)
    return {k: torch.cat([b[k] for b in parts]).numpy() for k in pipeline.CHUNK_COLUMNS}


def _signature(ch: dict[str, np.ndarray]) -> np.ndarray:
    """Order-free identity of each chunk (its data), for comparing two streams."""
    sig = ch["keypoints_2d"].astype(np.float64).sum(axis=(1, 2, 3)) + ch["centre_start"] * 1e-3 + ch["length"]
    return np.sort(np.round(sig, 3))


def test_ray_streams_splits_from_local_and_s3_store(tmp_path, mocap_views, ray_local, s3_server):
    local, uri = str(tmp_path / "st"), "s3://rp-pipe/mocap"
    m = store.write_store(mocap_views, local, shard_mb=0.5)
    store.write_store(mocap_views, uri, shard_mb=0.5, s3_endpoint=s3_server.endpoint)
    cfg = DataConfig(sources=[SourceConfig(name="st", format="store", path=local)], chunk_frames=256,
                     batch_size=8, num_frames=27, s3_endpoint=s3_server.endpoint)
    assert set(m["splits"]["train"]).isdisjoint(m["splits"]["val"] + m["splits"]["test"])
    assert m["splits"]["val"] and m["splits"]["test"]
    dss = pipeline.build_datasets(cfg, seed=1)
    s3 = pipeline.build_datasets(dataclasses.replace(cfg, sources=[SourceConfig(name="s3", format="store", path=uri)]), seed=1)
    for split in ("train", "val", "test"):
        batches = list(pipeline.iter_device_batches(dss[split], cfg, device="cpu"))
        b = batches[0]
        assert b["keypoints_2d"].dtype == torch.float32 and b["length"].dtype == torch.int64
        assert b["has_3d"].dtype == torch.bool and b["has_3d"].all() and b["keypoints_2d"].shape[0] <= 8
        got = _collect(batches)
        frames = sum(m["subjects"][s]["frames"] for s in m["splits"][split])
        assert (got["centre_stop"] - got["centre_start"]).sum() == frames   # every frame of the split's subjects once
        assert got["keypoints_2d"].shape[1:] == (256, 17, 3) and got["camera"].shape[1:] == (23,)
        assert got["root_3d"].shape[1:] == (256, 3) and (got["root_3d"][got["valid"]][:, 2] > 1).all()
        ref = _collect(pipeline.local_batches(cfg, split))
        np.testing.assert_allclose(_signature(got), _signature(ref))
        if split == "train":  # the same stream from S3
            np.testing.assert_allclose(_signature(_collect(pipeline.iter_device_batches(s3[split], cfg, "cpu"))),
                                       _signature(ref))
    # explicit subjects override the manifest's splits: a split reads only its subjects' shards
    explicit = dataclasses.replace(cfg, train_subjects=["deepmimic"], val_subjects=[], test_subjects=["climb_a"])
    _, shards = pipeline._store_split_shards(explicit.sources[0], explicit)
    assert {sh["subject"] for sh in shards["train"]} == {"deepmimic"} and not shards["val"]
    got = _collect(pipeline.local_batches(explicit, "train"))
    assert (got["centre_stop"] - got["centre_start"]).sum() == m["subjects"]["deepmimic"]["frames"]


def test_ray_default_mocap_source_in_memory_and_weights(ray_local):
    """No store at all: the default config streams the embedded mocap (jobs run with no args)."""
    cfg = DataConfig(chunk_frames=128, batch_size=16)
    dss = pipeline.build_datasets(cfg, seed=0)
    counts = {k: int((_collect(pipeline.iter_device_batches(d, cfg, "cpu"))["length"]).shape[0]) for k, d in dss.items()}
    assert all(counts.values())
    # two copies of the source with weights 3:1 → ≈1.5× and 0.5× the rows of one copy
    mixed = dataclasses.replace(cfg, sources=[SourceConfig(name="a", weight=3.0), SourceConfig(name="b", weight=1.0)])
    n = pipeline.build_datasets(mixed, seed=0)["train"].count()
    assert 1.6 * counts["train"] <= n <= 2.4 * counts["train"]


def test_training_batches_mix_many_sequences_and_views(ray_local):
    """A step's chunks come from many (sequence, camera) views, not the neighbours of a few:
    with the shuffle buffer almost every chunk of a batch is another view; without it, a batch
    is a run of consecutive chunks of one or two long views."""
    from raypose.data.clips import train_clips

    cfg = DataConfig(chunk_frames=64, batch_size=16, clips_per_sequence=2, shuffle_buffer=256,
                     num_frames=9, sources=[SourceConfig(virtual_cameras=4)])
    train = pipeline.build_datasets(cfg, seed=0)["train"]

    def views_per_batch(shuffle: bool) -> tuple[list[int], list[tuple]]:
        out, every = [], []
        for b in pipeline.iter_device_batches(train, cfg, "cpu", drop_last=True, shuffle=shuffle, seed=3):
            ids = [tuple(c) for c in b["camera"].tolist()]  # one virtual camera per view
            out.append(len(set(ids)))
            every += ids
            clips = train_clips(b, cfg, torch.Generator().manual_seed(0))
            assert clips.num_clips == cfg.batch_size * cfg.clips_per_sequence
            assert len(set(clips.chunk_index.tolist())) == cfg.batch_size  # the chunks the config asks for
        return out, every

    (mixed, _), (plain, every) = views_per_batch(True), views_per_batch(False)
    # the best any sampler can do: batches drawn uniformly at random from all training chunks
    codes = np.unique(np.array(every), axis=0, return_inverse=True)[1].ravel()
    rng = np.random.default_rng(0)
    uniform = np.mean([len(set(rng.choice(codes, cfg.batch_size, replace=False))) for _ in range(500)])
    assert np.mean(mixed) >= 0.85 * uniform, (mixed, uniform)
    assert np.mean(plain) < 0.5 * uniform, (plain, uniform)


def test_check_splits_knows_subjects_over_all_sources_together(shared_data):
    both = [SourceConfig(name="mocap", path=str(shared_data / "mocap_h36m17.npz")),
            SourceConfig(name="cmu", path=str(shared_data / "cmu_h36m17.npz"))]
    # climb_b exists only in the first source, cmu_01 only in the second: both are known
    cfg = DataConfig(sources=both, train_subjects=["climb_a", "cmu_01"], val_subjects=["cmu_02"],
                     test_subjects=["climb_b"])
    got = pipeline.check_splits(cfg)
    assert got == {"train": ["climb_a", "cmu_01"], "val": ["cmu_02"], "test": ["climb_b"]}
    # the original failure: unknown names were dropped per source and the run trained on nothing
    bad = dataclasses.replace(cfg, train_subjects=["S1", "climb_a", "S5"])
    with pytest.raises(ConfigError) as e:
        pipeline.check_splits(bad)
    msg = str(e.value)
    assert "data.train_subjects" in msg and "S1, S5" in msg and "climb_a," not in msg.split(";")[0]
    assert "climb_b" in msg and "cmu_07" in msg and "deepmimic" in msg   # the known ones, from both
    with pytest.raises(ConfigError, match="val_subjects names subjects no source has: S8"):
        pipeline.check_splits(dataclasses.replace(cfg, val_subjects=["S8"]))


def test_check_splits_refuses_an_empty_training_split(shared_data):
    src = [SourceConfig(name="mocap", path=str(shared_data / "mocap_h36m17.npz"))]
    cfg = DataConfig(sources=src, val_subjects=["climb_a", "deepmimic"], test_subjects=["climb_b"])
    with pytest.raises(ConfigError, match="training split is empty"):
        pipeline.check_splits(cfg)
    with pytest.raises(ConfigError, match="more than one split"):
        DataConfig(sources=src, train_subjects=["climb_a"], test_subjects=["climb_a"])
    # no lists: the data-driven default always keeps a training subject
    assert pipeline.check_splits(DataConfig(sources=src))["train"]


def test_check_splits_reads_a_stores_manifest(tmp_path, mocap_views):
    root = str(tmp_path / "store")
    store.write_store(mocap_views, root, 1.0)
    src = [SourceConfig(name="s", format="store", path=root)]
    assert pipeline.check_splits(DataConfig(sources=src))["train"]
    with pytest.raises(ConfigError, match=r"test_subjects names subjects no source has: S9, S11; "
                                          r"known subjects: climb_a, climb_b, cmu_02, cmu_06, deepmimic"):
        pipeline.check_splits(DataConfig(sources=src, test_subjects=["S9", "S11"]))


def test_split_tables_and_local_batches_refuse_unknown_subjects(tmp_path, mocap_views):
    """The original failure: evaluation and in-process studies filtered unknown names away and
    evaluated on fewer subjects (or none) without a word."""
    bad = DataConfig(max_sequences=2, test_subjects=["S9"])
    with pytest.raises(ConfigError, match=r"test_subjects names subjects no source has: S9; known subjects: "
                                          r"climb_a, climb_b, cmu_02, cmu_06, deepmimic"):
        pipeline.split_tables(bad, "test")
    with pytest.raises(ConfigError, match="val_subjects names subjects no source has: S8"):
        next(pipeline.local_batches(DataConfig(max_sequences=2, val_subjects=["S8"]), "val"))
    root = str(tmp_path / "store")
    store.write_store(mocap_views[:6], root, 1.0)
    src = [SourceConfig(name="s", format="store", path=root)]
    with pytest.raises(ConfigError, match="train_subjects names subjects no source has: S1"):
        pipeline.split_tables(DataConfig(sources=src, train_subjects=["S1"]), "train")
    good = DataConfig(max_sequences=2, test_subjects=["climb_b"])
    assert sum(t.num_rows for t in pipeline.split_tables(good, "test")) == 2


def test_bench_ingest_trains_on_every_subject_with_an_empty_val_split():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "ingest.py"
    spec = importlib.util.spec_from_file_location("bench_ingest", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = DataConfig(train_subjects=bench.all_subjects(DataConfig()))
    splits = pipeline.check_splits(data)
    assert splits["train"] == ["climb_a", "climb_b", "cmu_02", "cmu_06", "deepmimic"]
    assert splits["val"] == [] and splits["test"] == []


def test_every_shipped_config_on_the_embedded_data_resolves_or_is_refused():
    # a smoke config inheriting the paper configs' val_subjects [S8] would otherwise validate on
    # nothing; the H36M configs themselves must be refused on the embedded data, not run empty
    from pathlib import Path

    from raypose import config

    root = Path(__file__).resolve().parents[2] / "configs"
    for path in sorted(root.glob("*.yaml")) + sorted(root.glob("study/*.yaml")):
        data = config.load(path).data
        if any(s.path for s in data.sources):
            continue
        names = set(data.train_subjects + data.val_subjects + data.test_subjects)
        if names & {"S1", "S8", "S9"}:
            with pytest.raises(ConfigError, match="known subjects: climb_a, climb_b, cmu_02, cmu_06, deepmimic"):
                pipeline.check_splits(data)
        else:
            splits = pipeline.check_splits(data)
            assert splits["train"] and set(data.val_subjects) <= set(splits["val"]), path.name


def _chunk_keys(batches) -> list[tuple]:
    """One key per chunk (its camera, first owned frame and a checksum of its 2D): which chunks
    a pass held."""
    out = []
    for b in batches:
        sums = b["keypoints_2d"].double().flatten(1).sum(1)
        for cam, start, total in zip(b["camera"].tolist(), b["centre_start"].tolist(), sums.tolist()):
            out.append((tuple(cam), start, round(total, 3)))
    return out


def test_cached_passes_stop_starting_ray_executions_once_the_shard_fits(ray_local):
    """The first pass streams from Ray Data; later passes hold the same chunks, from memory,
    re-shuffled; a cap below the shard's size streams every pass."""
    cfg = DataConfig(chunk_frames=64, batch_size=8, num_frames=9, sources=[SourceConfig(virtual_cameras=2)])
    train = pipeline.build_datasets(cfg, seed=0)["train"]
    streams = []

    def stream():
        streams.append(1)
        return pipeline.iter_device_batches(train, cfg, "cpu", shuffle=True, seed=1)

    passes = pipeline.CachedPasses(stream, cap_mb=512, batch_size=8, shuffle=True, seed=0)
    first, second, third = (_chunk_keys(passes()) for _ in range(3))
    assert len(streams) == 1 and passes.cached
    assert sorted(first) == sorted(second) == sorted(third) and len(set(first)) == len(first)
    assert second != third  # a fresh permutation per pass

    nbytes = sum(pipeline._batch_bytes(b) for b in pipeline.iter_device_batches(train, cfg, "cpu"))
    streams.clear()
    small = pipeline.CachedPasses(stream, cap_mb=nbytes / 2e6, batch_size=8, shuffle=True, seed=0)
    assert sorted(_chunk_keys(small())) == sorted(_chunk_keys(small())) == sorted(first)
    assert len(streams) == 2 and not small.cached


def test_cached_passes_replay_a_pass_left_early_in_order(ray_local):
    """Validation stops after a few batches: the next pass replays exactly those, and one that
    wants more streams on past them (no chunk twice, none lost)."""
    import itertools

    cfg = DataConfig(chunk_frames=64, batch_size=4, num_frames=9, sources=[SourceConfig(virtual_cameras=2)])
    val = pipeline.build_datasets(cfg, seed=0)["train"]
    val.context.execution_options.preserve_order = True
    whole = _chunk_keys(pipeline.iter_device_batches(val, cfg, "cpu"))
    passes = pipeline.CachedPasses(lambda: pipeline.iter_device_batches(val, cfg, "cpu"), 512, 4, False, 0)
    assert _chunk_keys(itertools.islice(passes(), 3)) == whole[:12]
    assert _chunk_keys(itertools.islice(passes(), 2)) == whole[:8]
    assert not passes.cached
    assert _chunk_keys(passes()) == whole and passes.cached
    assert _chunk_keys(passes()) == whole


def _without_root_column(root) -> None:
    """Rewrite a store as stores were written before ``root_3d``: shards without the column, a
    manifest without ``columns`` (sizes and checksums updated, so it verifies)."""
    import hashlib
    import json

    import pyarrow.parquet as pq

    manifest = json.loads((root / "manifest.json").read_text())
    for sh in manifest["shards"]:
        path = root / sh["path"]
        table = pq.read_table(path)
        data = store._parquet_bytes(table.drop_columns(["root_3d"]))
        path.write_bytes(data)
        sh.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    del manifest["columns"]
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_a_store_without_root_positions_streams_with_roots_unknown_and_refuses_a_trajectory_head(
        tmp_path, mocap_views, ray_local):
    import shutil

    new, old = tmp_path / "new", tmp_path / "old"
    store.write_store(mocap_views, str(new), shard_mb=0.5)
    shutil.copytree(new, old)
    _without_root_column(old)
    assert all(v.root_3d is None for v in store.read_store(str(old)))
    cfg = DataConfig(sources=[SourceConfig(name="old", format="store", path=str(old))], chunk_frames=256,
                     batch_size=8, num_frames=27)
    got = _collect(pipeline.iter_device_batches(pipeline.build_datasets(cfg, seed=1)["train"], cfg, "cpu"))
    assert got["length"].shape[0] > 0 and np.isnan(got["root_3d"]).all()       # streamed, root unknown
    with pytest.raises(ConfigError, match="model.trajectory.*before root positions"):
        pipeline.check_root_3d(cfg)
    pipeline.check_root_3d(dataclasses.replace(cfg, sources=[SourceConfig(name="new", format="store", path=str(new))]))
    pipeline.check_root_3d(DataConfig())                                        # raw mocap through the rig


def test_label_fraction_keeps_a_seeded_nested_subset_of_whole_sequences():
    keys = [(f"s{i % 3}", f"a{i}") for i in range(40)] * 2          # every sequence seen by 2 cameras
    whole = pipeline.labelled_sequences(keys, 1.0, seed=0)
    assert len(whole) == 40
    few, some = (pipeline.labelled_sequences(keys, f, seed=0) for f in (0.05, 0.25))
    assert len(few) == 2 and len(some) == 10 and few <= some <= whole     # ceil(f·n), nested
    assert pipeline.labelled_sequences(list(reversed(keys)), 0.25, seed=0) == some  # order-free
    assert pipeline.labelled_sequences(keys, 0.25, seed=1) != some          # the seed draws it
    assert len(pipeline.labelled_sequences(keys, 0.001, seed=0)) == 1       # never an empty split


def test_label_fraction_thins_only_the_train_split_of_raw_and_stored_sources(tmp_path, mocap_views, ray_local):
    local = str(tmp_path / "st")
    store.write_store(mocap_views, local, shard_mb=0.5)
    raw = DataConfig(sources=[SourceConfig(virtual_cameras=2)], chunk_frames=256, num_frames=27,
                     train_subjects=["climb_a", "deepmimic"], test_subjects=["climb_b"])
    stored = dataclasses.replace(raw, sources=[SourceConfig(name="st", format="store", path=local)])

    def sequences(cfg, split):
        tables = pipeline.split_tables(cfg, split, seed=3)
        views = [(s, a) for t in tables for s, a in zip(t.column("subject").to_pylist(), t.column("action").to_pylist())]
        return views, set(views)

    for cfg in (raw, stored):
        all_views, all_seqs = sequences(cfg, "train")
        thin = dataclasses.replace(cfg, label_fraction=0.2)
        views, seqs = sequences(thin, "train")
        assert len(seqs) == math.ceil(0.2 * len(all_seqs)) and seqs < all_seqs
        assert len(views) == 2 * len(seqs)                               # both cameras of each kept sequence
        assert seqs == pipeline.labelled_sequences(all_seqs, 0.2, seed=3)
        assert sequences(thin, "test") == sequences(cfg, "test")          # test is never thinned
    # Ray Data streams the same labelled sequences from the store as the local reader
    thin = dataclasses.replace(stored, label_fraction=0.2)
    frames = int(_collect(pipeline.iter_device_batches(pipeline.build_datasets(thin, seed=3)["train"], thin, "cpu"))
                 .get("length").shape[0])
    local_frames = int(_collect(pipeline.local_batches(thin, "train", seed=3))["length"].shape[0])
    assert frames == local_frames > 0
    with pytest.raises(ValueError, match="label_fraction"):
        DataConfig(label_fraction=0.0)
