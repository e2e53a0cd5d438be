"""Every person in a video, against reference tracks: detection + tracking agreement, runtime,
and a picture of everyone lifted to 3D.

Detects and tracks every person in the Sports2D demo video with MediaPipe's bundled models
(:func:`raypose.data.people.detect_people`), matches the tracks to the two tracks of
``detections_coco17.json`` (MediaPipe's heavy PoseLandmarker, run by others) and reports per
reference track: coverage, mean / median pixel distance over the joints both sides detected,
the track id it landed on and id switches. Then lifts every track with the shipped model and
draws one frame with everyone (2D on the video, each person's 3D beside it).

    python bench/people.py --out docs/results/people.json --picture docs/demo/people.png

Needs the video extra (``./setup.sh --video``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO.parent / "shared" / "data" / "sports2d_demo"


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(DEMO / "demo.mp4"))
    p.add_argument("--reference", default=str(DEMO / "detections_coco17.json"))
    p.add_argument("--max-people", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON report")
    p.add_argument("--picture", default=None, help="PNG: one frame with everyone, 2D and 3D")
    p.add_argument("--frame", type=int, default=100, help="the pictured frame")
    return p.parse_args(argv)


def picture(det, path: str, frame: int) -> Path:
    """Lift every track with the shipped model and draw ``frame`` with all of them."""
    from raypose import viz
    from raypose.data.detections import iter_video_frames
    from raypose.infer import contiguous, lift_tracks, load_checkpoint

    lifter = load_checkpoint()
    lifted = lift_tracks(lifter.model, det.tracks, det.width, det.height, lifter.num_frames,
                         stride=lifter.stride, fps=det.fps, model_fps=lifter.fps,
                         max_gap=int(round(det.fps or 30)))
    kp2d, poses = {}, {}
    for tid, (frames, pose) in lifted.items():
        at = np.nonzero(frames == frame)[0]
        if len(at):
            poses[tid] = pose[at[0]]
            full, kp = contiguous(det.tracks[tid])
            kp2d[tid] = kp[np.nonzero(full == frame)[0][0]]
    image = next(img for i, img in enumerate(iter_video_frames(det.video_path)) if i == frame)
    small = image[::2, ::2]                     # half size: a small PNG for the README
    kp2d = {tid: kp * np.array([0.5, 0.5, 1.0], np.float32) for tid, kp in kp2d.items()}
    out = viz.people_frame(small, kp2d, poses, path, title=f"frame {frame}: every person, tracked")
    from PIL import Image

    Image.open(out).convert("RGB").quantize(colors=192).save(out, optimize=True)  # README-sized
    return out


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse(argv)
    from raypose.data.detections import read_detections
    from raypose.data.people import compare_tracks, detect_people

    started = time.perf_counter()
    det = detect_people(args.video, max_people=args.max_people, max_frames=args.max_frames)
    seconds = time.perf_counter() - started
    frames = det.extra["num_frames"]
    reference = read_detections(args.reference)
    for tid, tr in list(reference.tracks.items()):       # only the frames that were detected
        keep = tr.frames < frames
        reference.tracks[tid] = type(tr)(tr.frames[keep], tr.keypoints[keep])
    report = {
        "video": Path(args.video).name, "frames": frames, "width": det.width, "height": det.height,
        "detect_and_track_s": round(seconds, 1), "ms_per_frame": round(1000 * seconds / frames, 1),
        "tracks": {tid: {"frames": t.num_frames, "first": int(t.frames[0]), "last": int(t.frames[-1])}
                   for tid, t in det.tracks.items()},
        "reference_tracks": compare_tracks(det.tracks, reference.tracks),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    if args.picture:
        print(f"wrote {picture(det, args.picture, args.frame)}")
    return report


if __name__ == "__main__":
    main()
