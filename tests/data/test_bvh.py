"""The BVH source: real CMU/Character-Creator files against the shared H36M-17 conversion, a
hand-made LAFAN/Mixamo rig against forward kinematics done by hand, user joint maps, bad files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from raypose.config import SourceConfig
from raypose.data.sources import READERS, read_source
from raypose.data.sources.bvh import read_bvh
from raypose.errors import RayposeDataError
from raypose.skeleton import JOINT_INDEX

SAMPLES = {"002_03": ("cmu_02", "02_03"), "006_09": ("cmu_06", "06_09")}

# A tiny hand-made rig (LAFAN names): joint → (parent, OFFSET in cm, Y up).
RIG = {
    "Hips": (None, (0, 5, 0)),
    "LeftUpLeg": ("Hips", (10, 0, 0)), "LeftLeg": ("LeftUpLeg", (0, -45, 0)),
    "LeftFoot": ("LeftLeg", (0, -45, 0)),
    "RightUpLeg": ("Hips", (-10, 0, 0)), "RightLeg": ("RightUpLeg", (0, -45, 0)),
    "RightFoot": ("RightLeg", (0, -45, 0)),
    "Spine": ("Hips", (0, 10, 0)), "Spine1": ("Spine", (0, 15, 0)), "Spine2": ("Spine1", (0, 15, 0)),
    "Neck": ("Spine2", (0, 15, 0)), "Head": ("Neck", (0, 10, 0)),
    "LeftShoulder": ("Spine2", (5, 10, 0)), "LeftArm": ("LeftShoulder", (12, 0, 0)),
    "LeftForeArm": ("LeftArm", (28, 0, 0)), "LeftHand": ("LeftForeArm", (25, 0, 0)),
    "RightShoulder": ("Spine2", (-5, 10, 0)), "RightArm": ("RightShoulder", (-12, 0, 0)),
    "RightForeArm": ("RightArm", (-28, 0, 0)), "RightHand": ("RightForeArm", (-25, 0, 0)),
}
END_SITES = {"LeftFoot": (0, -5, 10), "RightFoot": (0, -5, 10), "Head": (0, 20, 0),
             "LeftHand": (10, 0, 0), "RightHand": (-10, 0, 0)}
Y_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)  # (x, y, z) → (x, -z, y)


def rig_bvh(prefix: str = "", z_up: bool = False, scale: float = 1.0, rename=None) -> str:
    """The RIG as BVH text, 2 frames at 30 fps.

    Frame 0: root at (1, 95, 2) + OFFSET (0, 5, 0), no rotation. Frame 1: root at (0, 95, 0) + OFFSET,
    turned 90° about the up axis, and LeftArm rotated Rz(90)·Rx(90) (channel order Z X Y), so its
    forearm points up. The Z-up variant writes the same motion in Z-up axes: offsets and positions
    turned by Y_TO_Z_UP, the yaw about Z, and the arm's Rz(90) (about Y-up's z = Z-up's -y) as
    Ry(-90), channels 'Yrotation Xrotation Zrotation'.
    """
    name = rename or (lambda n: prefix + n)
    turn = Y_TO_Z_UP if z_up else np.eye(3)

    def vec(v) -> str:
        return " ".join(f"{x:.6f}" for x in turn @ np.asarray(v, float) * scale)

    root_channels = ("Xposition Yposition Zposition " +
                     ("Zrotation Xrotation Yrotation" if z_up else "Yrotation Xrotation Zrotation"))
    arm_channels = "Yrotation Xrotation Zrotation" if z_up else "Zrotation Xrotation Yrotation"
    lines: list[str] = ["HIERARCHY"]

    def emit(joint: str, depth: int) -> None:
        pad = "  " * depth
        parent, offset = RIG[joint]
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name(joint)}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {vec(offset)}")
        channels = (root_channels if parent is None else arm_channels if joint == "LeftArm"
                    else "Zrotation Xrotation Yrotation")
        lines.append(f"{pad}  CHANNELS {len(channels.split())} {channels}")
        for child, (p, _) in RIG.items():
            if p == joint:
                emit(child, depth + 1)
        if joint in END_SITES:
            lines.extend([f"{pad}  End Site", pad + "  {",
                          f"{pad}    OFFSET {vec(END_SITES[joint])}", pad + "  }"])
        lines.append(pad + "}")

    emit("Hips", 0)
    order = []

    def walk(joint: str) -> None:
        order.append(joint)
        for child, (p, _) in RIG.items():
            if p == joint:
                walk(child)

    walk("Hips")
    lines += ["MOTION", "Frames: 2", "Frame Time: 0.033333"]
    for frame in range(2):
        row: list[str] = []
        for joint in order:
            if joint == "Hips":
                position = (1, 95, 2) if frame == 0 else (0, 95, 0)
                row += vec(position).split() + ["0" if frame == 0 else "90", "0", "0"]
            elif joint == "LeftArm" and frame == 1:
                row += ["-90", "90", "0"] if z_up else ["90", "90", "0"]
            else:
                row += ["0", "0", "0"]
        lines.append(" ".join(row))
    return "\n".join(lines) + "\n"


#: What the RIG's two frames give, worked out by hand, in metres, Z up (H36M joint → per frame).
EXPECTED = {
    # frame 0: hips at (1, 100, 2) cm Y up → (0.01, -0.02, 1.00) m Z up; everything translated.
    "pelvis": [(0.01, -0.02, 1.00), (0.0, 0.0, 1.00)],
    # frame 1: yaw 90° about up maps Y-up (x, y, z) → (z, y, -x): rig-local (17, 50, 0) → (0, 150, -17).
    "l_shoulder": [(0.18, -0.02, 1.50), (0.0, 0.17, 1.50)],
    # Rz(90)·Rx(90) turns the forearm's (28, 0, 0) into (0, 28, 0): elbow (17, 78, 0) rig-local.
    "l_elbow": [(0.46, -0.02, 1.50), (0.0, 0.17, 1.78)],
    "l_wrist": [(0.71, -0.02, 1.50), (0.0, 0.17, 2.03)],
    # rig-local (10, -45, 0) → (0, 55, -10) Y up → (0, 0.10, 0.55) Z up.
    "l_knee": [(0.11, -0.02, 0.55), (0.0, 0.10, 0.55)],
    "head": [(0.01, -0.02, 1.85), (0.0, 0.0, 1.85)],          # the Head's End Site, 85 cm up
    "thorax": [(0.01, -0.02, 1.55), (0.0, 0.0, 1.55)],        # Neck
}


def write(tmp_path: Path, text: str, name: str = "rig_01.bvh") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_expected(pos: np.ndarray) -> None:
    for joint, frames in EXPECTED.items():
        np.testing.assert_allclose(pos[:, JOINT_INDEX[joint]], np.array(frames), atol=1e-5, err_msg=joint)


@pytest.mark.parametrize("stem", sorted(SAMPLES))
def test_cmu_samples_match_cmu_h36m17(shared_data, stem):
    subject, action = SAMPLES[stem]
    with np.load(shared_data / "cmu_h36m17.npz", allow_pickle=True) as z:
        reference = z["positions_3d"].item()[subject][action]
        segment = z["metadata"].item()["segments"][subject][action]
    # Whole trials (not cut into _s1/_s2), so frame i of the file is frame i of the reference.
    assert (segment["file"], segment["start"], segment["end"]) == (f"{stem}.bvh", 0, segment["frames_in_file"])
    (rec,) = read_bvh(shared_data / "bvh_samples" / f"{stem}.bvh")
    assert (rec.dataset, rec.subject, rec.action, rec.fps) == ("bvh", stem[:3], stem, 60.0)
    assert rec.positions_3d.dtype == np.float32 and rec.positions_3d.shape == reference.shape
    error = np.linalg.norm(rec.positions_3d - reference, axis=-1)   # absolute: same world frame
    assert error.max() < 0.01, f"max {error.max():.4f} m, mean {error.mean():.6f} m"
    # The ROOT OFFSET is in: the pelvis stands ≈1 m above the floor, not ≈0.
    assert 0.9 < np.median(rec.positions_3d[:, 0, 2]) < 1.1


@pytest.mark.parametrize("prefix", ["", "mixamorig:"])
def test_lafan_and_mixamo_names_map_and_match_hand_kinematics(tmp_path, prefix):
    (rec,) = read_bvh(write(tmp_path, rig_bvh(prefix)))
    assert rec.fps == 30.0 and rec.positions_3d.shape == (2, 17, 3)
    assert_expected(rec.positions_3d)


def test_units_and_up_axis_are_detected_or_given(tmp_path):
    metres_z_up = write(tmp_path, rig_bvh(z_up=True, scale=0.01), "zup.bvh")
    assert_expected(read_bvh(metres_z_up)[0].positions_3d)
    assert_expected(read_bvh(metres_z_up, units="m", up_axis="z")[0].positions_3d)
    inches = write(tmp_path, rig_bvh(scale=1 / 2.54), "inches.bvh")  # would read as cm
    assert_expected(read_bvh(inches, units="inch")[0].positions_3d)
    with pytest.raises(RayposeDataError, match="units must be one of"):
        read_bvh(inches, units="furlong")


def test_user_joint_map_for_an_unknown_rig(tmp_path):
    path = write(tmp_path, rig_bvh(rename=lambda n: f"bone_{n.lower()}"))
    with pytest.raises(RayposeDataError) as err:
        read_bvh(path)
    assert str(path) in str(err.value) and "bone_leftforearm" in str(err.value)

    sides = {"l": "left", "r": "right"}
    joint_map = {f"{s}_{part}": f"bone_{side}{rig}" for s, side in sides.items()
                 for part, rig in (("hip", "upleg"), ("knee", "leg"), ("foot", "foot"),
                                   ("shoulder", "arm"), ("elbow", "forearm"), ("wrist", "hand"))}
    joint_map.update(pelvis=["bone_leftupleg", "bone_rightupleg"], spine="bone_spine1",
                     thorax="bone_neck", neck_nose="bone_head",
                     head={"joint": "bone_head", "offset": [0.0, 0.2, 0.0]})   # = its End Site
    (rec,) = read_bvh(path, joint_map=joint_map)
    assert_expected(rec.positions_3d)

    with pytest.raises(RayposeDataError, match="bone_nose"):
        read_bvh(path, joint_map={**joint_map, "head": "bone_nose"})
    with pytest.raises(RayposeDataError, match="unknown H36M joint"):
        read_bvh(path, joint_map={**joint_map, "tail": "bone_hips"})


def test_user_joint_map_overrides_a_detected_rig(shared_data):
    sample = shared_data / "bvh_samples" / "002_03.bvh"
    (default,) = read_bvh(sample)
    (moved,) = read_bvh(sample, joint_map={"spine": "CC_Base_Waist"})
    spine = JOINT_INDEX["spine"]
    others = [j for j in range(17) if j != spine]
    np.testing.assert_array_equal(moved.positions_3d[:, others], default.positions_3d[:, others])
    # The waist sits below Spine02, between it and the pelvis.
    assert (moved.positions_3d[:, spine, 2] < default.positions_3d[:, spine, 2]).all()
    assert (moved.positions_3d[:, spine, 2] > default.positions_3d[:, 0, 2]).all()


GOOD = rig_bvh()
HEADER, MOTION = GOOD.split("MOTION\n")
ROWS = MOTION.splitlines()[2:]


@pytest.mark.parametrize("text, problem", [
    ("", "empty file"),
    (HEADER, "no MOTION"),
    (HEADER + "MOTION\nFrames: 2\nFrame Time: 0.033333\n" + ROWS[0] + "\n" + ROWS[1] + " 0.5\n",
     "frame 1\\) has 64 values, expected 63"),
    (HEADER + "MOTION\nFrames: 3\nFrame Time: 0.033333\n" + "\n".join(ROWS) + "\n", "says 3 frames but holds 2"),
    (HEADER + "MOTION\nFrames: 2\nFrame Time: 0.033333\n" + ROWS[0] + "\n" + ROWS[1].replace("90", "ninety", 1) + "\n",
     "not a number"),
    (GOOD.replace("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Xrotation", 1),
     "CHANNELS says 3 but lists 2"),
    ("just some text\n", "no HIERARCHY header"),
])
def test_bad_files_raise_naming_the_file(tmp_path, text, problem):
    path = write(tmp_path, text, "bad.bvh")
    with pytest.raises(RayposeDataError, match=problem) as err:
        read_bvh(path)
    assert err.value.path == str(path)


def test_folder_as_a_training_source_at_50_fps(shared_data, tmp_path):
    assert "bvh" in READERS
    folder = tmp_path / "bvh"
    folder.mkdir()
    for stem in SAMPLES:
        shutil.copy(shared_data / "bvh_samples" / f"{stem}.bvh", folder)
    src = SourceConfig(name="cmu_bvh", format="bvh", path=str(folder),
                       options={"units": "cm", "up_axis": "y"})
    records = read_source(src, target_fps=50)
    assert [(r.subject, r.action, r.fps, r.num_frames) for r in records] == [
        ("002", "002_03", 50.0, 71), ("006", "006_09", 50.0, 125)]   # (86-1)/60·50+1, (150-1)/60·50+1
    (native,) = read_bvh(folder, subjects=["002"])
    np.testing.assert_allclose(records[0].positions_3d[::5], native.positions_3d[::6], atol=1e-6)  # t = 0.1 s steps
    named = read_source(SourceConfig(format="bvh", path=str(folder),
                                     options={"subject": "cmu", "actions": ["006_09"]}), target_fps=0)
    assert [(r.subject, r.action, r.fps) for r in named] == [("cmu", "006_09", 60.0)]
    with pytest.raises(RayposeDataError, match="unknown subject"):
        read_source(src, target_fps=50, subjects=["S1"])
