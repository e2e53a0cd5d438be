"""The sequence store: exact round trips (local and a real S3 server), splits by subject,
atomic and idempotent writes, corrupt shards named, reads that survive an S3 restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from raypose.config import SourceConfig
from raypose.data import store
from raypose.errors import RayposeDataError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mocap_views():
    """Real mocap (embedded default data) seen from 2 virtual cameras per sequence."""
    from raypose.data.sources import read_source, views

    records = read_source(SourceConfig(), 50.0)
    rng = np.random.default_rng(0)
    return [v for r in records for v in views(r, rng, 2)]


def _key(v):
    return (v.dataset, v.subject, v.action, v.camera.name)


def assert_same_views(expected, got):
    assert len(got) == len(expected)
    by_key = {_key(v): v for v in got}
    assert len(by_key) == len(got), "duplicate rows"
    for e in expected:
        g = by_key[_key(e)]
        assert g.fps == e.fps
        np.testing.assert_array_equal(g.keypoints_2d, e.keypoints_2d)
        if e.joints_3d is None:
            assert g.joints_3d is None
        else:
            np.testing.assert_array_equal(g.joints_3d, e.joints_3d)
        np.testing.assert_array_equal(g.valid, np.ones(len(e.keypoints_2d), bool) if e.valid is None else e.valid)
        np.testing.assert_array_equal(g.camera.to_array(), e.camera.to_array())
        if getattr(e, "root_3d", None) is None:
            assert g.root_3d is None
        else:
            np.testing.assert_array_equal(g.root_3d, e.root_3d)


def test_local_round_trip_counts_and_manifest(tmp_path, mocap_views):
    m = store.write_store(mocap_views, str(tmp_path / "st"), shard_mb=1)
    assert_same_views(mocap_views, list(store.read_store(str(tmp_path / "st"))))
    frames = sum(len(v.keypoints_2d) for v in mocap_views)
    assert (m["rows"], m["frames"]) == (len(mocap_views), frames)
    assert len(m["shards"]) > 3 and sum(s["rows"] for s in m["shards"]) == len(mocap_views)
    on_disk = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert on_disk == m
    for sh in m["shards"]:
        assert (tmp_path / "st" / sh["path"]).stat().st_size == sh["bytes"]
    subjects = {v.subject for v in mocap_views}
    assert set(m["subjects"]) == subjects and m["datasets"]["mocap"]["rows_with_3d"] == len(mocap_views)
    # every shard holds one subject, so a split by subject is a choice of files
    assert all({v.subject for v in store.table_to_views(store.read_shard_table(str(tmp_path / "st"), sh))}
               == {sh["subject"]} for sh in m["shards"])
    assert not list((tmp_path / "st").rglob("_tmp/*"))
    # the camera-space pelvis rides along (rig views: the pelvis of the un-centred 3D)
    assert all(v.root_3d is not None for v in mocap_views) and m["columns"][-1] == "root_3d"
    v = mocap_views[0]
    np.testing.assert_allclose(v.camera.project(v.joints_3d + v.root_3d[:, None], distort=False),
                               v.keypoints_2d[..., :2], atol=1e-2)


def test_splits_never_share_a_subject():
    frames = {"S1": 1000, "S5": 900, "S6": 800, "S7": 1200, "S8": 700, "S9": 600, "S11": 650}
    for sp in (store.assign_splits(frames),
               store.assign_splits(frames, val=["S9"], test=["S11"]),
               store.assign_splits(frames, train=["S1", "S5"], test=["S9", "S11"])):
        sets = [set(sp[k]) for k in ("train", "val", "test")]
        assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
        assert sets[0]
    auto = store.assign_splits(frames)
    assert auto == store.assign_splits(dict(reversed(list(frames.items()))))  # order-free
    assert auto["val"] and auto["test"]
    assert store.assign_splits(frames, val=["S9"], test=["S11"])["train"] == ["S1", "S5", "S6", "S7", "S8"]
    assert store.assign_splits({"only": 10}) == {"train": ["only"], "val": [], "test": []}


def test_idempotent_rerun_and_changed_input(tmp_path, mocap_views):
    out = str(tmp_path / "st")
    m1 = store.write_store(mocap_views, out, shard_mb=1)
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "st").rglob("*.parquet")}
    assert store.write_store(mocap_views, out, shard_mb=1) == m1  # complete + same fingerprint: untouched
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "st").rglob("*.parquet")} == mtimes
    (tmp_path / "st" / "manifest.json").unlink()                   # forced rewrite: identical bytes
    assert store.write_store(mocap_views, out, shard_mb=1) == m1
    # different input: rewritten, stale shards of the old manifest removed
    m3 = store.write_store(mocap_views[:3], out, shard_mb=1)
    assert m3["fingerprint"] != m1["fingerprint"] and m3["rows"] == 3
    assert sorted(str(p.relative_to(tmp_path / "st")) for p in (tmp_path / "st").rglob("*.parquet")) \
        == sorted(sh["path"] for sh in m3["shards"])
    assert_same_views(mocap_views[:3], list(store.read_store(out)))


def _only_complete_shards(root: Path) -> list[Path]:
    """Every file under a final shard name parses as a whole Parquet file."""
    import pyarrow.parquet as pq

    files = sorted((root / "shards").glob("*.parquet"))
    for f in files:
        pq.read_table(f)
    return files


def test_crash_between_shards_leaves_no_visible_store_and_rerun_completes(tmp_path, mocap_views):
    out = str(tmp_path / "st")

    def boom(index: int, rel: str) -> None:
        if index == 1:
            raise KeyboardInterrupt("killed mid-write")

    with pytest.raises(KeyboardInterrupt):
        store.write_store(mocap_views, out, shard_mb=1, on_shard=boom)
    assert not (tmp_path / "st" / "manifest.json").exists()
    assert len(_only_complete_shards(tmp_path / "st")) == 2
    with pytest.raises(RayposeDataError, match="manifest"):
        list(store.read_store(out))
    m = store.write_store(mocap_views, out, shard_mb=1)
    assert_same_views(mocap_views, list(store.read_store(out)))
    assert len(_only_complete_shards(tmp_path / "st")) == len(m["shards"])


def test_killed_writer_process_never_exposes_a_partial_shard(tmp_path):
    """SIGKILL a real writer while it is writing shards; only whole shards carry final names."""
    out = tmp_path / "st"
    script = textwrap.dedent(f"""
        import sys, time, numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from raypose.config import SourceConfig
        from raypose.data import store
        from raypose.data.sources import read_source, views
        vs = [v for r in read_source(SourceConfig(), 50.0) for v in views(r, np.random.default_rng(0), 2)]
        def slow(i, rel):
            print(i, flush=True)
            time.sleep(0.2)
        store.write_store(vs, {str(out)!r}, shard_mb=0.2, on_shard=slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert proc.stdout.readline().strip() != ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    assert 3 <= len(_only_complete_shards(out))


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip"])
def test_corrupt_shard_raises_naming_it(tmp_path, mocap_views, damage):
    out = str(tmp_path / "st")
    m = store.write_store(mocap_views[:6], out, shard_mb=0.1)
    sh = m["shards"][1]
    path = tmp_path / "st" / sh["path"]
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(RayposeDataError) as err:
        list(store.read_store(out))
    assert sh["path"] in str(err.value)
    if damage == "garbage":   # without checksums the Parquet reader's complaint is still named
        with pytest.raises(RayposeDataError, match=sh["path"].replace(".", r"\.") + ".*Parquet"):
            list(store.read_store(out, verify=False))
    if damage == "truncate":  # the cheap pre-flight check of the streaming path catches it too
        with pytest.raises(RayposeDataError, match="truncated"):
            store.check_shard_sizes(out, m)


def _upload(local_root: Path, fs: pafs.FileSystem, prefix: str) -> None:
    fs.create_dir(prefix.split("/")[0])
    for f in sorted(local_root.rglob("*")):
        if f.is_file():
            with fs.open_output_stream(f"{prefix}/{f.relative_to(local_root)}") as out:
                out.write(f.read_bytes())


def test_s3_round_trip_and_restart_mid_read(tmp_path, mocap_views, s3_server):
    """Write straight to S3 (moto on 127.0.0.1), read back; then restart the server mid-read.

    moto keeps no state across restarts, so after the restart the test re-uploads the same
    store from a local copy (as an operator restoring a bucket would). The reader is blocked
    on a refused connection meanwhile; it must retry, finish, and yield every row once.
    """
    uri = "s3://rp-store/mocap/v1"
    m = store.write_store(mocap_views, uri, shard_mb=1, s3_endpoint=s3_server.endpoint)
    assert_same_views(mocap_views, list(store.read_store(uri, s3_server.endpoint)))
    fs, root = store.filesystem_for(uri, s3_server.endpoint)
    keys = {i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.type == pafs.FileType.File}
    assert keys == {f"{root}/manifest.json"} | {f"{root}/{s['path']}" for s in m["shards"]}  # no temp keys left
    # idempotent on S3 too
    assert store.write_store(mocap_views, uri, shard_mb=1, s3_endpoint=s3_server.endpoint) == m

    local = tmp_path / "copy"
    store.write_store(mocap_views, str(local), shard_mb=1)
    it = store.read_store(uri, s3_server.endpoint)
    got = [next(it)]
    s3_server.stop()

    def restore() -> None:
        time.sleep(1.0)
        s3_server.start()
        _upload(local, store.filesystem_for(uri, s3_server.endpoint)[0], root)

    t = threading.Thread(target=restore)
    t.start()
    t0 = time.time()
    got.extend(it)   # first shard was read whole before the stop; the next ones retry
    t.join()
    assert time.time() - t0 >= 1.0, "the read should have waited for the restarted server"
    assert_same_views(mocap_views, got)
