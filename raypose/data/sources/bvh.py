"""BVH motion capture (one skeleton per file) reduced to the H36M-17 joints, Z up, metres.

BVH is what most mocap tools export (CMU conversions, Ubisoft LAFAN1, Mixamo, MotionBuilder),
but its rigs differ in joint names, units and up axis, so this reader works them out per file:

- **Joints.** The rig is recognised from its joint names: the iClone Character Creator rig of
  the CMU conversion (``CC_Base_*``) or the ``Hips``/``LeftUpLeg``/``Spine1`` naming of LAFAN1
  and Mixamo (any name prefix such as ``mixamorig:``). ``joint_map`` adds to or replaces it:
  H36M joint name (:data:`raypose.skeleton.JOINT_NAMES`) → a *point spec*, one of

  * ``"LeftUpLeg"`` — that joint; an End Site is named ``<its joint>_End`` (``Head_End``);
  * ``["LeftUpLeg", "RightUpLeg"]`` — the mean of several specs;
  * ``{"joint": "Head", "offset": [0, 0.2, 0]}`` — a point fixed in a joint's own frame,
    ``offset`` in metres along that joint's local axes (how the CC map places the head top);
  * ``{"first_of": [spec, ...]}`` — the first spec whose joints the file has.

  A rig no map covers is an error naming the file and listing its joints.
- **Units** (``units``: m, cm, mm or inch): detected as metres or centimetres from the leg
  length (hip → knee → ankle) when not given; inches must be given.
- **Up axis** (``up_axis``: y or z): detected from the pelvis → head direction when not given;
  Y-up points are turned to raypose's Z-up world by +90° about x ((x, y, z) → (x, -z, y)).

Forward kinematics follows the BVH convention: a joint's translation is its OFFSET plus its
position channels (the ROOT's OFFSET too — the CMU conversion puts the hips' height there, and
readers that drop it leave the body ≈1 m low); its rotation is the product of its rotation
channels in the order they are listed (``Zrotation Yrotation Xrotation`` → Rz·Ry·Rx), degrees.

Subject = the ``subject`` option, else the file stem before its first '_' ('002' for
``002_03.bvh``), else the folder's name; action = the file stem. A folder is searched
recursively for ``*.bvh``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from raypose import skeleton
from raypose.data.record import SequenceRecord
from raypose.data.sources._common import check_metres, resample_record, select
from raypose.errors import RayposeDataError
from raypose.skeleton import JOINT_NAMES

#: A point of the rig: a joint name, a list (mean), or a dict ({joint, offset} / {first_of}).
PointSpec = Union[str, Sequence[Any], Mapping[str, Any]]

UNIT_SCALE: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254}
UP_AXES = ("y", "z")
#: Hip → knee → ankle of an adult is ≈0.8–1 m; a leg longer than this many units is not metres.
MAX_LEG_LENGTH_M = 5.0

_POSITION_CHANNELS = ("xposition", "yposition", "zposition")
_ROTATION_CHANNELS = ("xrotation", "yrotation", "zrotation")


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------

@dataclass
class BvhJoint:
    name: str
    parent: int                      # index into BvhMotion.joints, -1 for the root
    offset: np.ndarray               # (3,) in file units
    channels: list[str] = field(default_factory=list)   # lower-case, e.g. 'zrotation'
    first_channel: int = 0           # column of its first channel in the motion rows


@dataclass
class BvhMotion:
    """A parsed file: joints in file order (parents before children, End Sites included)."""

    joints: list[BvhJoint]
    frame_time: float
    values: np.ndarray               # (frames, channels) float64

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]


def parse_bvh(path: str | Path) -> BvhMotion:
    """Read a BVH file's HIERARCHY and MOTION sections; bad input names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise RayposeDataError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise RayposeDataError(path, f"cannot read the file ({e})") from None
    first = next((line.strip() for line in lines if line.strip()), None)
    if first is None:
        raise RayposeDataError(path, "empty file")
    if first.upper() != "HIERARCHY":
        raise RayposeDataError(path, f"not a BVH file: no HIERARCHY header (starts {first[:40]!r})")
    joints, motion_line = _parse_hierarchy(path, lines)
    values, frame_time = _parse_motion(path, lines, motion_line, sum(len(j.channels) for j in joints))
    return BvhMotion(joints, frame_time, values)


def _parse_hierarchy(path: Path, lines: list[str]) -> tuple[list[BvhJoint], int]:
    """Joints in file order and the index of the MOTION line."""
    joints: list[BvhJoint] = []
    stack: list[int] = []            # open '{' blocks: index of their joint
    pending: Optional[BvhJoint] = None
    num_channels = 0
    for number, line in enumerate(lines):
        words = line.split()
        if not words:
            continue
        key = words[0].upper()
        where = f"line {number + 1}"
        if key == "HIERARCHY":
            continue
        if key == "MOTION":
            if stack or pending is not None:
                raise RayposeDataError(path, f"{where}: MOTION before the hierarchy's braces close")
            if not joints:
                raise RayposeDataError(path, "the HIERARCHY section has no joints")
            return joints, number
        if key in ("ROOT", "JOINT"):
            name = line.strip()[len(words[0]):].strip().rstrip("{").strip()
            if not name:
                raise RayposeDataError(path, f"{where}: {words[0]} without a name")
            if (key == "ROOT") != (not stack):
                raise RayposeDataError(path, f"{where}: {words[0]} {name} at the wrong nesting level")
            pending = BvhJoint(name, stack[-1] if stack else -1, np.zeros(3))
        elif key == "END":
            if not stack:
                raise RayposeDataError(path, f"{where}: End Site outside a joint")
            pending = BvhJoint(f"{joints[stack[-1]].name}_End", stack[-1], np.zeros(3))
        elif key == "{":
            if pending is None:
                raise RayposeDataError(path, f"{where}: '{{' without a ROOT, JOINT or End Site")
            joints.append(pending)
            stack.append(len(joints) - 1)
            pending = None
        elif key == "}":
            if not stack:
                raise RayposeDataError(path, f"{where}: unmatched '}}'")
            stack.pop()
        elif key == "OFFSET":
            if not stack or len(words) != 4:
                raise RayposeDataError(path, f"{where}: OFFSET needs 3 numbers inside a joint")
            joints[stack[-1]].offset = _numbers(path, where, words[1:])
        elif key == "CHANNELS":
            if not stack:
                raise RayposeDataError(path, f"{where}: CHANNELS outside a joint")
            names = [w.lower() for w in words[2:]]
            if not words[1].isdigit() or int(words[1]) != len(names):
                raise RayposeDataError(path, f"{where}: CHANNELS says {words[1]} but lists {len(names)}")
            unknown = [w for w in names if w not in _POSITION_CHANNELS + _ROTATION_CHANNELS]
            if unknown:
                raise RayposeDataError(path, f"{where}: unknown channel(s) {', '.join(unknown)}")
            joint = joints[stack[-1]]
            joint.channels, joint.first_channel = names, num_channels
            num_channels += len(names)
        else:
            raise RayposeDataError(path, f"{where}: unexpected {words[0]!r} in the hierarchy")
    raise RayposeDataError(path, "no MOTION section")


def _parse_motion(path: Path, lines: list[str], start: int, num_channels: int) -> tuple[np.ndarray, float]:
    header: dict[str, str] = {}
    row = start + 1
    while row < len(lines) and len(header) < 2:
        text = lines[row].strip()
        row += 1
        if not text:
            continue
        label, _, value = text.partition(":")
        if label.strip().lower() not in ("frames", "frame time"):
            raise RayposeDataError(path, f"line {row}: expected 'Frames:' and 'Frame Time:', "
                                         f"got {text[:40]!r}")
        header[label.strip().lower()] = value.strip()
    try:
        num_frames, frame_time = int(header["frames"]), float(header["frame time"])
    except (KeyError, ValueError):
        raise RayposeDataError(path, "MOTION needs 'Frames: N' and 'Frame Time: seconds'") from None
    if num_frames <= 0:
        raise RayposeDataError(path, f"MOTION has {num_frames} frames")
    if not frame_time > 0:
        raise RayposeDataError(path, f"Frame Time is {frame_time}, expected > 0 seconds")
    rows = [(number, line.split()) for number, line in enumerate(lines[row:], row + 1) if line.strip()]
    for frame, (number, words) in enumerate(rows):
        if len(words) != num_channels:
            raise RayposeDataError(path, f"line {number} (frame {frame}) has {len(words)} values, "
                                         f"expected {num_channels} (the hierarchy's channels)")
    if len(rows) != num_frames:
        raise RayposeDataError(path, f"MOTION says {num_frames} frames but holds {len(rows)}")
    values = np.array([_numbers(path, f"line {n}", w) for n, w in rows], dtype=np.float64)
    return values.reshape(num_frames, num_channels), frame_time


def _numbers(path: Path, where: str, words: Sequence[str]) -> np.ndarray:
    try:
        values = np.array([float(w) for w in words], dtype=np.float64)
    except ValueError:
        raise RayposeDataError(path, f"{where}: not a number in {' '.join(words)[:60]!r}") from None
    if not np.isfinite(values).all():
        raise RayposeDataError(path, f"{where}: NaN or inf")
    return values


# --------------------------------------------------------------------------------------------
# Forward kinematics
# --------------------------------------------------------------------------------------------

def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about one coordinate axis ('x', 'y' or 'z')."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rows = {"x": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
            "y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
            "z": ((c, -s, zero), (s, c, zero), (zero, zero, one))}[axis]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def forward_kinematics(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, J, 3) and rotations (T, J, 3, 3) of every joint, in file units/axes.

    Vectorised over frames; the loop runs over joints, parents first (file order guarantees it).
    """
    values = motion.values
    num_frames = values.shape[0]
    positions = np.zeros((num_frames, len(motion.joints), 3))
    rotations = np.zeros((num_frames, len(motion.joints), 3, 3))
    for index, joint in enumerate(motion.joints):
        translation = np.broadcast_to(joint.offset, (num_frames, 3)).copy()
        local = np.broadcast_to(np.eye(3), (num_frames, 3, 3))
        for k, channel in enumerate(joint.channels):
            column = values[:, joint.first_channel + k]
            if channel in _POSITION_CHANNELS:
                translation[:, _POSITION_CHANNELS.index(channel)] += column
            else:
                local = local @ _axis_rotation(channel[0], column)
        if joint.parent < 0:
            positions[:, index], rotations[:, index] = translation, local
        else:
            parent_rotation = rotations[:, joint.parent]
            positions[:, index] = (positions[:, joint.parent]
                                   + np.einsum("tij,tj->ti", parent_rotation, translation))
            rotations[:, index] = parent_rotation @ local
    return positions, rotations


# --------------------------------------------------------------------------------------------
# Joint maps: rig joints → H36M-17
# --------------------------------------------------------------------------------------------

def _head_top(joint: str) -> dict[str, Any]:
    """The CC rig has no head-top joint: 0.197 m up the head joint's own y axis."""
    return {"joint": joint, "offset": [0.0, 0.197, 0.0]}


def _sides(left: str, right: str, parts: Mapping[str, str]) -> dict[str, PointSpec]:
    """The six limb-joint entries per side, from H36M suffix → rig name template '{side}'."""
    spec: dict[str, PointSpec] = {}
    for h36m_side, rig_side in (("l", left), ("r", right)):
        for part, template in parts.items():
            spec[f"{h36m_side}_{part}"] = template.format(side=rig_side)
    return spec


#: iClone Character Creator (the IClone-CMU-Mocap conversion): the definitions cmu_h36m17.npz
#: was built with, so this reader reproduces it.
CHARACTER_CREATOR_MAP: dict[str, PointSpec] = {
    "pelvis": ["CC_Base_L_Thigh", "CC_Base_R_Thigh"],
    "spine": "CC_Base_Spine02",
    "thorax": "CC_Base_NeckTwist01",
    "neck_nose": ["CC_Base_NeckTwist01", _head_top("CC_Base_Head")],
    "head": _head_top("CC_Base_Head"),
    **_sides("L", "R", {"hip": "CC_Base_{side}_Thigh", "knee": "CC_Base_{side}_Calf",
                        "foot": "CC_Base_{side}_Foot", "shoulder": "CC_Base_{side}_Upperarm",
                        "elbow": "CC_Base_{side}_Forearm", "wrist": "CC_Base_{side}_Hand"}),
}

#: Ubisoft LAFAN1 and Mixamo (the same names behind a prefix such as 'mixamorig:'); the head top
#: is Mixamo's HeadTop_End joint or the Head's End Site.
HIPS_RIG_MAP: dict[str, PointSpec] = {
    "pelvis": ["LeftUpLeg", "RightUpLeg"],
    "spine": {"first_of": ["Spine1", "Spine"]},
    "thorax": "Neck",
    "neck_nose": "Head",
    "head": {"first_of": ["HeadTop_End", "Head_End"]},
    **_sides("Left", "Right", {"hip": "{side}UpLeg", "knee": "{side}Leg", "foot": "{side}Foot",
                               "shoulder": "{side}Arm", "elbow": "{side}ForeArm",
                               "wrist": "{side}Hand"}),
}


def _prefixed(spec: PointSpec, prefix: str) -> PointSpec:
    if isinstance(spec, str):
        return prefix + spec
    if isinstance(spec, Mapping):
        if "first_of" in spec:
            return {"first_of": [_prefixed(s, prefix) for s in spec["first_of"]]}
        return {**spec, "joint": prefix + spec["joint"]}
    return [_prefixed(s, prefix) for s in spec]


def _missing(spec: PointSpec, names: set[str]) -> list[str]:
    """Joint names ``spec`` needs that the file lacks (a first_of needs only one alternative)."""
    if isinstance(spec, str):
        return [] if spec in names else [spec]
    if isinstance(spec, Mapping):
        if "first_of" in spec:
            options = [_missing(s, names) for s in spec["first_of"]]
            return [] if any(not m for m in options) else [n for m in options for n in m]
        return _missing(spec["joint"], names)
    return [n for s in spec for n in _missing(s, names)]


def _check_spec(path: Path, key: str, spec: Any) -> None:
    what = f"joint_map[{key!r}]"
    if isinstance(spec, str):
        return
    if isinstance(spec, Mapping):
        if set(spec) == {"first_of"} and isinstance(spec["first_of"], (list, tuple)) and spec["first_of"]:
            for s in spec["first_of"]:
                _check_spec(path, key, s)
            return
        offset = spec.get("offset")
        if (set(spec) == {"joint", "offset"} and isinstance(spec["joint"], str)
                and isinstance(offset, (list, tuple)) and len(offset) == 3
                and all(isinstance(v, (int, float)) for v in offset)):
            return
        raise RayposeDataError(path, f"{what} must be {{joint: NAME, offset: [x, y, z]}} or "
                                     f"{{first_of: [...]}}, got {dict(spec)!r}")
    if isinstance(spec, (list, tuple)) and spec:
        for s in spec:
            _check_spec(path, key, s)
        return
    raise RayposeDataError(path, f"{what} must be a joint name, a non-empty list of them (their "
                                 f"mean) or a dict, got {spec!r}")


def _builtin_maps(names: set[str]) -> list[tuple[str, dict[str, PointSpec]]]:
    """Candidate built-in maps for these joint names, most specific first."""
    candidates = [("Character Creator (CC_Base_*)", CHARACTER_CREATOR_MAP)]
    for prefix in sorted({n[:-len("Hips")] for n in names if n.endswith("Hips")}, key=len):
        label = f"LAFAN/Mixamo (prefix {prefix!r})" if prefix else "LAFAN/Mixamo"
        candidates.append((label, {k: _prefixed(v, prefix) for k, v in HIPS_RIG_MAP.items()}))
    return candidates


def resolve_joint_map(path: Path, names: Sequence[str],
                      user_map: Optional[Mapping[str, Any]] = None) -> dict[str, PointSpec]:
    """Every H36M joint's point spec: the first built-in rig that fits, overridden by ``user_map``."""
    user_map = dict(user_map or {})
    unknown = [k for k in user_map if k not in JOINT_NAMES]
    if unknown:
        raise RayposeDataError(path, f"joint_map names unknown H36M joint(s) "
                                     f"{', '.join(map(repr, unknown))}; expected some of "
                                     f"{', '.join(JOINT_NAMES)}")
    for key, spec in user_map.items():
        _check_spec(path, key, spec)
    available = set(names)
    chosen: dict[str, PointSpec] = {}
    for _, rig_map in _builtin_maps(available):
        if all(not _missing(spec, available) for key, spec in rig_map.items() if key not in user_map):
            chosen = dict(rig_map)
            break
    chosen.update(user_map)
    listing = ", ".join(names)
    uncovered = [k for k in JOINT_NAMES if k not in chosen]
    if uncovered:
        raise RayposeDataError(
            path, f"no known rig matches its joints (Character Creator CC_Base_*, LAFAN/Mixamo "
                  f"Hips/LeftUpLeg/Spine1…) and joint_map does not give {', '.join(uncovered)}; "
                  f"the file's joints are: {listing}")
    for key in JOINT_NAMES:
        missing = _missing(chosen[key], available)
        if missing:
            raise RayposeDataError(path, f"joint_map[{key!r}] names joint(s) the file lacks: "
                                         f"{', '.join(missing)}; the file's joints are: {listing}")
    return {k: chosen[k] for k in JOINT_NAMES}


def _point(spec: PointSpec, index: Mapping[str, int], positions: np.ndarray, rotations: np.ndarray,
           units_per_metre: float) -> np.ndarray:
    """(T, 3) positions of one point spec, in file units (``offset``s are metres)."""
    if isinstance(spec, str):
        return positions[:, index[spec]]
    if isinstance(spec, Mapping):
        if "first_of" in spec:
            usable = next(s for s in spec["first_of"] if not _missing(s, set(index)))
            return _point(usable, index, positions, rotations, units_per_metre)
        j = index[spec["joint"]]
        offset = np.asarray(spec["offset"], dtype=np.float64) * units_per_metre
        return positions[:, j] + rotations[:, j] @ offset
    return np.mean([_point(s, index, positions, rotations, units_per_metre) for s in spec], axis=0)


# --------------------------------------------------------------------------------------------
# Units, up axis, the reader
# --------------------------------------------------------------------------------------------

_UNIT_ALIASES = {"m": "m", "meter": "m", "metre": "m", "meters": "m", "metres": "m",
                 "cm": "cm", "centimeter": "cm", "centimetre": "cm", "centimeters": "cm",
                 "centimetres": "cm", "mm": "mm", "millimeter": "mm", "millimetre": "mm",
                 "millimeters": "mm", "millimetres": "mm", "inch": "inch", "in": "inch",
                 "inches": "inch"}


def _leg_length(points: Mapping[str, np.ndarray]) -> float:
    """Median hip → knee → ankle length over frames and sides, in file units."""
    lengths = [np.linalg.norm(points[f"{s}_hip"] - points[f"{s}_knee"], axis=-1)
               + np.linalg.norm(points[f"{s}_knee"] - points[f"{s}_foot"], axis=-1) for s in "lr"]
    return float(np.median(np.concatenate(lengths)))


def detect_units(leg_length: float) -> str:
    """Metres, centimetres or millimetres, whichever makes an adult-sized leg (inches: say so)."""
    if leg_length <= MAX_LEG_LENGTH_M:
        return "m"
    return "cm" if leg_length <= MAX_LEG_LENGTH_M * 60 else "mm"


def detect_up_axis(path: Path, pelvis: np.ndarray, head: np.ndarray) -> str:
    """'y' or 'z': the axis the pelvis → head direction mostly points along, upwards."""
    try:
        return skeleton.up_axis_of(head - pelvis)
    except ValueError as e:
        raise RayposeDataError(path, f"{e}; give up_axis: y or z") from None


def _to_z_up(points: np.ndarray, up_axis: str) -> np.ndarray:
    return points if up_axis == "z" else skeleton.y_up_to_z_up(points)


def _frame_rate(frame_time: float) -> float:
    """1 / Frame Time, snapped to a whole rate: files print 0.016667 s for 60 fps."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 5e-4 * fps else fps


def bvh_to_h36m(path: str | Path, joint_map: Optional[Mapping[str, Any]] = None,
                units: Optional[str] = None, up_axis: Optional[str] = None) -> tuple[np.ndarray, float]:
    """One file as (T, 17, 3) float32 metres, Z up, and its frame rate."""
    path = Path(path)
    if units is not None and str(units).lower() not in _UNIT_ALIASES:
        raise RayposeDataError(path, f"units must be one of {', '.join(UNIT_SCALE)}, got {units!r}")
    if up_axis is not None and str(up_axis).lower() not in UP_AXES:
        raise RayposeDataError(path, f"up_axis must be one of {', '.join(UP_AXES)}, got {up_axis!r}")
    motion = parse_bvh(path)
    specs = resolve_joint_map(path, motion.names, joint_map)
    positions, rotations = forward_kinematics(motion)
    index = {name: i for i, name in enumerate(motion.names)}
    if units is None:
        # Offsets in specs are metres: leave them out (× 0) until the file's unit is known.
        legs = {k: _point(specs[k], index, positions, rotations, 0.0)
                for k in ("l_hip", "l_knee", "l_foot", "r_hip", "r_knee", "r_foot")}
        units = detect_units(_leg_length(legs))
    scale = UNIT_SCALE[_UNIT_ALIASES[str(units).lower()]]
    points = np.stack([_point(specs[k], index, positions, rotations, 1.0 / scale)
                       for k in JOINT_NAMES], 1)
    if up_axis is None:
        up_axis = detect_up_axis(path, points[:, JOINT_NAMES.index("pelvis")],
                                 points[:, JOINT_NAMES.index("head")])
    points = _to_z_up(points * scale, str(up_axis).lower()).astype(np.float32)
    check_metres(points, path, "joint positions")
    return points, _frame_rate(motion.frame_time)


def bvh_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise RayposeDataError(root, "file or folder not found")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() == ".bvh")
    if not files:
        raise RayposeDataError(root, "folder holds no .bvh files")
    return files


def subject_of(file: Path) -> str:
    """The stem before its first '_' ('002' for 002_03.bvh), else the folder's name."""
    stem = file.stem
    if "_" in stem and stem.split("_", 1)[0]:
        return stem.split("_", 1)[0]
    return file.parent.name or stem


def read_bvh(
    path: str | Path,
    target_fps: float = 0.0,
    subjects: Optional[Sequence[str]] = None,
    actions: Optional[Sequence[str]] = None,
    dataset: str = "bvh",
    joint_map: Optional[Mapping[str, Any]] = None,
    units: Optional[str] = None,
    up_axis: Optional[str] = None,
    subject: Optional[str] = None,
) -> list[SequenceRecord]:
    """One world-frame (Z up, metres), 3D-only record per .bvh file, resampled to ``target_fps``.

    ``subject`` names every file's subject (default: see the module docstring); ``subjects`` and
    ``actions`` (file stems) filter, and a name that matches nothing is an error.
    """
    root = Path(path)
    files = bvh_files(root)
    by_subject = {f: subject or subject_of(f) for f in files}
    wanted_subjects = set(select(sorted(set(by_subject.values())), subjects, root, "subject"))
    files = [f for f in files if by_subject[f] in wanted_subjects]
    wanted_actions = set(select([f.stem for f in files], actions, root, "action"))
    records = []
    for f in files:
        if f.stem not in wanted_actions:
            continue
        positions, fps = bvh_to_h36m(f, joint_map, units, up_axis)
        rec = SequenceRecord(dataset, by_subject[f], f.stem, fps, positions_3d=positions,
                             frame_3d="world", source_path=str(f))
        records.append(resample_record(rec, target_fps))
    return records
