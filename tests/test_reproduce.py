"""docs/reproduce.md stays honest: its job commands parse with the jobs' own parsers, its configs
load with each command's overrides, its data-preparation commands build real stores from files in
the datasets' layouts, the training commands see the intended splits, and the papers' numbers in
the page equal the table below."""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from raypose import config
from raypose.cameras import h36m_cameras
from raypose.data import store
from raypose.data.pipeline import split_tables
from raypose.data.sources import READERS
from raypose.models import build_from_config
from raypose.train.run import stage_config
from tests.data.formats import (STANDING_POSE, h36m_to_3dhp_order, pose_sequence, write_3dhp_npz,
                                write_amass_joints, write_coco_json, write_pseudo_labels,
                                write_videopose3d_2d, write_videopose3d_3d)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reproduce.md"
PAPERS = REPO.parent / "shared" / "papers"

#: (method, setting) → what the paper reports (mm; PCK/AUC in %); PAPER_FILES names its text.
PAPER_NUMBERS: dict[tuple[str, str], dict[str, float]] = {
    ("P-STMO", "H36M, CPN 2D"): {"frames": 243, "MPJPE": 42.8, "P-MPJPE": 34.4},
    ("P-STMO-S", "H36M, CPN 2D"): {"frames": 243, "MPJPE": 43.0},
    ("P-STMO", "H36M, GT 2D"): {"frames": 243, "MPJPE": 29.3},
    ("MPM", "H36M, CPN 2D"): {"frames": 243, "MPJPE": 42.3, "P-MPJPE": 34.4},
    ("APTPose", "H36M, CPN 2D"): {"frames": 243, "MPJPE": 42.6, "P-MPJPE": 34.0},
    ("APTPose +Extra2D", "H36M, CPN 2D"): {"frames": 243, "MPJPE": 42.5, "P-MPJPE": 33.8},
    ("P-STMO", "3DHP, GT 2D"): {"frames": 81, "MPJPE": 32.2, "PCK": 97.9, "AUC": 75.8},
    ("APTPose", "3DHP, GT 2D"): {"frames": 81, "MPJPE": 30.8, "PCK": 98.0, "AUC": 76.8},
    ("APTPose +Extra2D", "3DHP, GT 2D"): {"frames": 81, "MPJPE": 30.5, "PCK": 97.7, "AUC": 77.2},
}
PAPER_FILES = {"P-STMO": "003_", "MPM": "002_", "APTPose": "000_"}
METRICS = ("MPJPE", "P-MPJPE", "PCK", "AUC")

#: The raw inputs the page tells users to have, by shell variable, and the stores it writes.
INPUT_VARS = ("H36M", "MPI3DHP", "AMASS", "COCO")
INPUT_FILES = ("data_3d_h36m.npz", "data_2d_h36m_cpn_ft_h36m_dbb.npz", "data_2d_h36m_gt.npz",
               "data_train_3dhp.npz", "data_test_3dhp.npz", "person_keypoints_train2017.json")
STORES = ("h36m_cpn", "h36m_gt", "mpi_inf_3dhp", "amass", "coco")
H36M_TEST, DHP_TEST = {"S9", "S11"}, {f"TS{i}" for i in range(1, 7)}


# --------------------------------------------------------------------------------------------
# reading the page
# --------------------------------------------------------------------------------------------

def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)


def logical_lines(block: str) -> list[str]:
    """Lines with backslash continuations joined; here-document bodies dropped."""
    out, pending, heredoc = [], "", None
    for raw in block.splitlines():
        if heredoc is not None:
            heredoc = None if raw.strip() == heredoc else heredoc
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        heredoc = m.group(1) if m else None
        out.append(line)
    return out


def simple_commands(line: str) -> list[list[str]]:
    """Shell words of each simple command in ``line`` (split at |, &&, ;, redirections, …)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    out, current = [], []
    for tok in lex:
        if tok and set(tok) <= set("();<>|&"):
            out.append(current)
            current = []
        else:
            current.append(tok)
    out.append(current)
    return [c for c in out if c]


@dataclass
class JobCommand:
    script: str          # e.g. 'jobs/pretrain.py'
    argv: list[str]      # words after the script, shell variables still unexpanded
    prefix: list[str]    # words before `python` (e.g. a `ray job submit … --` prefix)
    line: str

    @property
    def job(self) -> str:
        return Path(self.script).stem

    def value(self, flag: str) -> Optional[str]:
        return self.argv[self.argv.index(flag) + 1] if flag in self.argv else None


def job_commands(text: Optional[str] = None) -> list[JobCommand]:
    found = []
    for block in bash_blocks(text or doc_text()):
        for line in logical_lines(block):
            for words in simple_commands(line):
                for i, w in enumerate(words[:-1]):
                    if (w == "python" or w.endswith("/python")) and words[i + 1].startswith("jobs/"):
                        found.append(JobCommand(words[i + 1], words[i + 2:], words[:i], line))
                        break
    return found


# --------------------------------------------------------------------------------------------
# shell variables → concrete words
# --------------------------------------------------------------------------------------------

VAR = re.compile(r"\$\((?:[^()]|\([^()]*\))*\)|\$\{(\w+)\}|\$(\w+)")
PLACEHOLDER = "/tmp/raypose-doc-placeholder"


def expand(word: str, env: dict[str, str]) -> str:
    return VAR.sub(lambda m: env.get(m.group(1) or m.group(2) or "", PLACEHOLDER), word)


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k not in ("extra", "space", "options", "level_groups", "stage_overrides"):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def concrete_argv(cmd: JobCommand, env: dict[str, str]) -> list[str]:
    """The command's words with variables expanded; a `--set key=$VAR` whose variable is not in
    ``env`` (e.g. `$STEPS`, `$(ckpt …)`) gets a dummy of the key's type."""
    cfg_path = cmd.value("--config")
    defaults = flat((config.load(REPO / cfg_path) if cfg_path else config.Config()).to_dict())
    out = []
    for i, word in enumerate(cmd.argv):
        if i and cmd.argv[i - 1] == "--set":
            key, _, value = word.partition("=")
            m = VAR.fullmatch(value)
            if m and (m.group(1) or m.group(2) or "") not in env:
                current = defaults.get(key)
                numeric = isinstance(current, (int, float)) and not isinstance(current, bool)
                out.append(f"{key}={'1' if numeric else PLACEHOLDER}")
                continue
        out.append(expand(word, env))
    return out


# --------------------------------------------------------------------------------------------
# the jobs' own parsers
# --------------------------------------------------------------------------------------------

def load_job(script: str):
    path = REPO / script
    spec = importlib.util.spec_from_file_location(f"reproduce_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    if str(REPO / "jobs") not in sys.path:
        sys.path.insert(0, str(REPO / "jobs"))
    spec.loader.exec_module(module)
    return module


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace) -> None:
        super().__init__("parsed")
        self.parser, self.namespace = parser, namespace


def parse_with_job(script: str, argv: list[str], monkeypatch) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Run the job's ``main(argv)`` only as far as its real ``parse_args``, and stop there."""
    module = load_job(script)
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(self, original(self, args, namespace))

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        try:
            module.main(argv)
        except _Parsed as done:
            return done.parser, done.namespace
    raise AssertionError(f"{script}: main() did not parse its arguments")


def run_stage(cmd: JobCommand) -> Optional[str]:
    return cmd.job if cmd.job in ("pretrain", "finetune") else None


# --------------------------------------------------------------------------------------------
# the page's commands
# --------------------------------------------------------------------------------------------

def test_page_has_the_recipes():
    text = doc_text()
    for var in (*INPUT_VARS, "STORES"):   # the variables the fixture below binds
        assert f"export {var}=" in text, var
    for name in INPUT_FILES:               # the files the fixture below writes
        assert f"`{name}`" in text, name
    cmds = job_commands()
    jobs = {c.job for c in cmds}
    assert {"prepare_data", "pretrain", "finetune", "evaluate"} <= jobs
    configs = {c.value("--config") for c in cmds if c.job in ("pretrain", "finetune")}
    assert {"configs/pstmo.yaml", "configs/pstmo_gt2d.yaml", "configs/aptpose.yaml", "configs/mpm.yaml",
            "configs/pstmo_3dhp.yaml", "configs/aptpose_3dhp.yaml"} <= configs
    submitted = [c for c in cmds if c.prefix[:3] == ["ray", "job", "submit"]]
    assert {c.value("--config") for c in submitted if c.job == "pretrain"} >= {
        "configs/pstmo.yaml", "configs/aptpose.yaml", "configs/mpm.yaml"}
    for c in cmds:   # fine-tuning starts from the pre-training its own log printed
        if c.job == "finetune":
            init = [w for w in c.argv if w.startswith("train.init=")]
            assert init and "ckpt logs/" in init[0], c.line


def test_parser_handles_continuations_heredocs_and_pipes():
    text = ("```bash\nf() {\n  python - <<'EOF'\nimport sys  # python jobs/nothing.py\nEOF\n}\n"
            "X=1 python jobs/pretrain.py --config a.yaml \\\n    --set \"k=[{p: $S/x}]\" | tee log\n"
            "ray job submit --address http://h:8265 -- python jobs/evaluate.py --checkpoint \"$(ckpt log)\"\n```\n")
    cmds = job_commands(text)
    assert [(c.script, c.argv, c.prefix) for c in cmds] == [
        ("jobs/pretrain.py", ["--config", "a.yaml", "--set", "k=[{p: $S/x}]"], ["X=1"]),
        ("jobs/evaluate.py", ["--checkpoint", "$(ckpt log)"],
         ["ray", "job", "submit", "--address", "http://h:8265", "--"]),
    ]
    assert expand("k=[{p: $S/x}] ${T} $(ckpt log)", {"S": "/s", "T": "t"}) == f"k=[{{p: /s/x}}] t {PLACEHOLDER}"


@pytest.mark.parametrize("cmd", job_commands(), ids=[f"{i:02d}-{c.job}" for i, c in enumerate(job_commands())])
def test_command_parses_and_its_config_loads(cmd, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert (REPO / cmd.script).is_file(), f"{cmd.script} does not exist"
    argv = concrete_argv(cmd, {})
    try:
        parser, ns = parse_with_job(cmd.script, argv, monkeypatch)
    except SystemExit:
        pytest.fail(f"{cmd.script} refused {argv}:\n{capsys.readouterr().err}")
    known = set(parser._option_string_actions)
    for word in argv:   # whole flag names: argparse would also accept an abbreviation
        if word.startswith("--"):
            assert word in known, f"{cmd.script} has no flag {word}"
    if ns.config:
        assert Path(ns.config).is_file(), ns.config
    cfg = config.load(ns.config, ns.overrides)
    if run_stage(cmd):
        cfg = stage_config(cfg, run_stage(cmd))
    for src in cfg.data.sources:
        assert src.format == "store" or src.format in READERS, src
    if cmd.job == "prepare_data":
        for text in ns.source:
            assert load_job(cmd.script).parse_source(text).format in READERS, text
    if cmd.job == "evaluate":
        assert ns.checkpoint, "evaluate commands name their checkpoint"


def test_every_config_named_on_the_page_exists():
    for name in sorted(set(re.findall(r"configs/[\w./-]+\.yaml", doc_text()))):
        assert (REPO / name).is_file(), name
        config.load(REPO / name)


def test_ray_job_submit_options_exist():
    submit_flags = set()
    for cmd in job_commands():
        if cmd.prefix[:3] == ["ray", "job", "submit"]:
            submit_flags |= {w for w in cmd.prefix[3:] if w.startswith("--") and w != "--"}
    assert submit_flags >= {"--address", "--working-dir"}
    ray = Path(sys.executable).with_name("ray")
    text = subprocess.run([str(ray), "job", "submit", "--help"], capture_output=True, text=True,
                          timeout=120).stdout
    for flag in submit_flags:
        assert re.search(rf"(^|\s){re.escape(flag)}\b", text), f"ray job submit has no {flag}"


def test_pretrained_encoders_load_into_the_finetuning_models():
    pairs = {}
    for cmd in job_commands():
        if run_stage(cmd):
            pairs.setdefault(cmd.value("--config"), set()).add(run_stage(cmd))
    for path, stages in sorted(pairs.items()):
        assert stages == {"pretrain", "finetune"}, f"{path} is used by only {stages}"
        cfg = config.load(REPO / path)
        pre = build_from_config(stage_config(cfg, "pretrain"), "pretrain")
        lift = build_from_config(stage_config(cfg, "finetune"), "finetune")
        loaded = set(lift.load_pretrained(pre.encoder_state_dict()).loaded)
        wanted = {k for k in lift.state_dict() if k.startswith(lift.ENCODER_PREFIX)}
        assert wanted and wanted <= loaded, f"{path}: encoder tensors not handed over: {sorted(wanted - loaded)[:5]}"


def test_3dhp_configs_follow_the_papers_protocol():
    for name, model in (("pstmo_3dhp", "pstmo_s"), ("aptpose_3dhp", "aptpose")):
        cfg = config.load(REPO / "configs" / f"{name}.yaml")
        ft = stage_config(cfg, "finetune")
        assert ft.model.name == model and ft.model.depth == 3 and ft.data.num_frames == 81
        assert ft.data.stride == 1 and ft.data.target_fps == 0
        assert set(ft.data.train_subjects) == {f"S{i}" for i in range(1, 8)}
        assert ft.data.val_subjects == ["S8"]   # a validation split, so best-by-val is not NaN
        assert set(ft.data.test_subjects) == DHP_TEST
        pre = stage_config(cfg, "pretrain")
        assert (pre.masking.temporal_ratio, pre.masking.spatial_joints) == (0.7, 2)
        assert pre.optim.lr == pytest.approx(1e-4) and ft.optim.lr == pytest.approx(7e-4)
    pre = stage_config(config.load(REPO / "configs" / "aptpose_3dhp.yaml"), "pretrain")
    assert [s.path for s in pre.data.sources] == ["stores/h36m_gt"] and set(pre.data.test_subjects) == H36M_TEST
    assert pre.loss.rec_3d > 0 and pre.data.num_frames == 81
    gt = config.load(REPO / "configs" / "pstmo_gt2d.yaml")
    assert gt.model.name == "pstmo_s" and gt.masking.spatial_joints == 7
    assert stage_config(gt, "finetune").optim.lr == pytest.approx(1e-3)
    assert stage_config(config.load(REPO / "configs" / "mpm.yaml"), "finetune").optim.lr == pytest.approx(1.6e-3)


# --------------------------------------------------------------------------------------------
# the papers' numbers
# --------------------------------------------------------------------------------------------

def _num(cell: str) -> Optional[float]:
    cell = cell.strip()
    return None if cell in ("–", "-", "") else float(cell)


def test_numbers_table_matches():
    rows = {}
    for line in doc_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"\d+", cells[2]):
            key = (cells[0], cells[1])
            assert key not in rows, f"row {key} twice"
            got = {"frames": int(cells[2])}
            for name, cell in zip(METRICS, (cells[3], cells[4], cells[5], cells[6])):
                if _num(cell) is not None:
                    got[name] = _num(cell)
            rows[key] = got
    assert rows == PAPER_NUMBERS


def test_paper_targets_beside_the_recipes_match():
    seen = {}
    for m in re.finditer(r"\*\*Paper target\*\* \(([^,]+), ([^)]+)\): ([^\n]+)", doc_text()):
        key = (m.group(1).strip(), m.group(2).strip())
        values = {name: float(v) for name, v in
                  re.findall(r"(?<![\w-])(P-MPJPE|MPJPE|PCK|AUC) (\d+(?:\.\d+)?)", m.group(3))}
        seen[key] = values
    assert set(seen) == set(PAPER_NUMBERS)
    for key, values in seen.items():
        expected = {k: v for k, v in PAPER_NUMBERS[key].items() if k != "frames"}
        assert values == expected, key


def test_numbers_appear_in_the_papers():
    from tests.conftest import require_shared

    require_shared(PAPERS, "the papers the quoted numbers come from")
    for (method, _), values in PAPER_NUMBERS.items():
        prefix = PAPER_FILES[method.split()[0].removesuffix("-S")]
        (path,) = PAPERS.glob(f"{prefix}*")
        text = re.sub(r"</?[bu]>", "", path.read_text(encoding="utf-8"))
        for name, v in values.items():
            token = str(v) if name == "frames" else f"{v:.1f}"
            assert re.search(rf"(?<![\d.]){re.escape(token)}(?![\d])", text), f"{method} {name} {token} not in {path.name}"


# --------------------------------------------------------------------------------------------
# the data-preparation commands, run for real on tiny files in the datasets' layouts
# --------------------------------------------------------------------------------------------

#: For each COCO-17 keypoint, the nearest H36M-17 joint (nose ≈ neck/nose, eyes and ears ≈ head).
COCO_FROM_H36M = [9, 10, 10, 10, 10, 11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3]


def _project(cam, world: np.ndarray) -> np.ndarray:
    return cam.project(cam.world_to_camera(world)).astype(np.float32)


def _camera_frame(world: np.ndarray) -> np.ndarray:
    """A person 4 m in front of a level camera: (x, −(z − 0.9), y + 4) (y down, z forward)."""
    return np.stack([world[..., 0], -(world[..., 2] - 0.9), world[..., 1] + 4.0], -1)


def _pinhole(cam: np.ndarray, f: float, cx: float, cy: float) -> np.ndarray:
    return np.stack([f * cam[..., 0] / cam[..., 2] + cx, f * cam[..., 1] / cam[..., 2] + cy], -1)


def write_inputs(root: Path) -> dict[str, Any]:
    """The raw files section 1 of the page lists, small, in their real layouts."""
    h36m = root / "h36m"
    positions = {"S1": {"Walking": pose_sequence(120, seed=1), "Walking 1": pose_sequence(90, seed=2)},
                 "S9": {"Eating": pose_sequence(100, seed=3)}}
    gt = {s: {a: [_project(c, p) for c in h36m_cameras(s)] for a, p in acts.items()} for s, acts in positions.items()}
    cpn = {s: {a: [np.concatenate([k + 3.0, k[-3:] + 3.0]) for k in cams] for a, cams in acts.items()}
           for s, acts in gt.items()}   # detections: offset, and a few frames past the mocap
    write_videopose3d_3d(h36m / "data_3d_h36m.npz", positions)
    write_videopose3d_2d(h36m / "data_2d_h36m_cpn_ft_h36m_dbb.npz", cpn)
    write_videopose3d_2d(h36m / "data_2d_h36m_gt.npz", gt)

    dhp = root / "mpi_inf_3dhp"
    def clip(T: int, seed: int, f: float, cx: float, cy: float):
        cam = _camera_frame(pose_sequence(T, seed=seed))
        return {"data_3d": h36m_to_3dhp_order(cam * 1000.0), "data_2d": h36m_to_3dhp_order(_pinhole(cam, f, cx, cy))}
    write_3dhp_npz(dhp / "data_train_3dhp.npz", {"S1 Seq1": {0: clip(60, 4, 1500, 1024, 1024)},
                                                "S2 Seq1": {0: clip(50, 5, 1500, 1024, 1024)}})
    valid = np.ones(40, bool)
    valid[:5] = False
    write_3dhp_npz(dhp / "data_test_3dhp.npz",
                   {"TS1": {**clip(40, 6, 1500, 1024, 1024), "valid": valid},
                    "TS5": {**clip(40, 7, 1680, 960, 540), "valid": valid}}, test=True)

    amass = root / "amass"
    write_amass_joints(amass / "CMU" / "01" / "01_01_poses.npz", pose_sequence(240, fps=120.0, seed=8), 120.0)

    coco = root / "coco"
    images, anns, labels = [], [], {}
    for i in (1, 2):
        cam = _camera_frame(STANDING_POSE[None].astype(np.float64))[0]
        h36m_px = _pinhole(cam, 600.0, 320.0, 240.0)
        kp = np.concatenate([h36m_px[COCO_FROM_H36M], np.full((17, 1), 2.0)], 1)
        images.append({"id": i, "width": 640, "height": 480})
        anns.append({"id": 10 + i, "image_id": i, "keypoints": kp})
        labels[10 + i] = cam
    write_coco_json(coco / "person_keypoints_train2017.json", images, anns)
    write_pseudo_labels(coco / "pseudo_3d_train2017.npz", labels)
    return {"env": {"H36M": str(h36m), "MPI3DHP": str(dhp), "AMASS": str(amass), "COCO": str(coco),
                    "STORES": str(root / "stores")},
            "cpn": cpn, "gt": gt, "valid": valid}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every `jobs/prepare_data.py` command of the page, run on the tiny inputs."""
    root = tmp_path_factory.mktemp("reproduce")
    inputs = write_inputs(root)
    env = inputs["env"]
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for cmd in job_commands():
            if cmd.job != "prepare_data":
                continue
            argv = [expand(w, env) for w in cmd.argv]
            assert PLACEHOLDER not in " ".join(argv), f"unknown shell variable in {cmd.line}"
            load_job(cmd.script).main(argv)
    finally:
        os.chdir(cwd)
    return {**inputs, "stores": Path(env["STORES"])}


def test_data_commands_build_the_stores(prepared):
    stores = prepared["stores"]
    assert sorted(p.name for p in stores.iterdir()) == sorted(STORES)
    for name in STORES:
        assert (stores / name / "manifest.json").is_file()

    for name, expected in (("h36m_cpn", prepared["cpn"]), ("h36m_gt", prepared["gt"])):
        m = store.read_manifest(str(stores / name))
        assert m["splits"]["train"] == ["S1"] and m["splits"]["test"] == ["S9"]
        views = {(v.subject, v.action, v.camera.name): v for v in store.read_store(str(stores / name))}
        cams = [c.name for c in h36m_cameras("S1")]
        kp = views[("S1", "Walking 1", cams[2])].keypoints_2d
        np.testing.assert_allclose(kp[..., :2], expected["S1"]["Walking 1"][2][:90], atol=1e-3)

    m = store.read_manifest(str(stores / "mpi_inf_3dhp"))
    assert m["splits"]["train"] == ["S1", "S2"] and m["splits"]["test"] == ["TS1", "TS5"]
    views = {v.subject: v for v in store.read_store(str(stores / "mpi_inf_3dhp"))}
    assert {s: (v.fps, len(v.keypoints_2d)) for s, v in views.items()} == {
        "S1": (25.0, 60), "S2": (25.0, 50), "TS1": (25.0, 40), "TS5": (50.0, 40)}   # not resampled
    np.testing.assert_array_equal(np.asarray(views["TS5"].valid, bool), prepared["valid"])

    amass = list(store.read_store(str(stores / "amass")))
    assert len(amass) == 4 and {v.fps for v in amass} == {50.0} and {v.subject for v in amass} == {"CMU/01"}
    coco = list(store.read_store(str(stores / "coco")))
    assert len(coco) == 2 and all(len(v.keypoints_2d) == 243 and v.joints_3d is not None for v in coco)


def _subjects(data_cfg, split: str) -> set[str]:
    return {s for t in split_tables(_present(data_cfg), split) for s in t.column("subject").to_pylist()}


def _present(data):
    """``data`` with its split lists cut to the subjects its sources hold: the prepared stores
    here are miniatures with a few subjects of each dataset, and naming a subject no source has
    is an error (the full configs name them all)."""
    from raypose.data.pipeline import source_subject_frames

    has = {s for src in data.sources for s in source_subject_frames(src, data)}
    lists = {f"{k}_subjects": [s for s in getattr(data, f"{k}_subjects") if s in has]
             for k in ("train", "val", "test")}
    assert lists["train_subjects"] or not data.train_subjects, "no training subject is present"
    return dataclasses.replace(data, **lists)


def _alone(data, src):
    """``data`` with only ``src`` (``_subjects`` then cuts the lists to its subjects)."""
    return dataclasses.replace(data, sources=[src])


def test_training_commands_see_the_intended_splits(prepared, monkeypatch):
    monkeypatch.chdir(REPO)
    env = dict(prepared["env"])
    checked = 0
    for cmd in job_commands():
        stage = run_stage(cmd)
        if not stage or cmd.prefix[:3] == ["ray", "job", "submit"]:
            continue   # the cluster forms differ only in S3 paths and worker counts
        argv = concrete_argv(cmd, env)
        overrides = [argv[i + 1] for i, w in enumerate(argv) if w == "--set"]
        cfg = stage_config(config.load(cmd.value("--config"), overrides), stage)
        data = cfg.data
        assert all(s.format == "store" for s in data.sources), cmd.line
        for src in data.sources:   # every source contributes training sequences
            assert _subjects(_alone(data, src), "train"), f"{src.name} gives no training data in {cmd.line}"
        train, test = _subjects(data, "train"), _subjects(data, "test")
        assert train and test and not train & test, cmd.line
        if test <= DHP_TEST:
            assert test == {"TS1", "TS5"} and train == {"S1", "S2"}, cmd.line
            fps = {f for t in split_tables(_present(data), "test") for f in t.column("fps").to_pylist()}
            assert fps == {25.0, 50.0}, cmd.line
        else:
            assert test == {"S9"} and "S1" in train and not train & DHP_TEST, cmd.line
        checked += 1
    assert checked >= 12


def test_every_bash_block_is_valid_bash():
    for block in bash_blocks(doc_text()):
        out = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"{out.stderr}\n{block}"


def _run_helpers(commands: str, cwd: Path, stores: Path) -> list[str]:
    """The page's set-up block (helpers and exports) followed by ``commands``, in bash."""
    block = next(b for b in bash_blocks(doc_text()) if "steps() {" in b and "ckpt() {" in b)
    block = block.replace("source .venv/bin/activate", ":")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "-c", f"{block}\nexport STORES={shlex.quote(str(stores))}\n{commands}"],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_steps_helper_counts_training_frames_twice(prepared, tmp_path):
    stores = prepared["stores"]
    frames = (store.read_manifest(str(stores / "h36m_cpn"))["subjects"]["S1"]["frames"]
              + store.read_manifest(str(stores / "amass"))["frames"])
    lines = _run_helpers('steps "$STORES/h36m_cpn=S1" "$STORES/amass"', tmp_path, stores)
    assert lines == [str(max(1, 2 * frames // 160))]


def test_ckpt_helper_reads_the_last_checkpoint_line(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.log").write_text(
        "[pretrain] epoch 1/2 ...\ncheckpoint: /r/a/checkpoint_epoch0000\nnoise\n"
        "checkpoint: s3://b/runs/x/checkpoint_epoch0001\n")
    lines = _run_helpers("ckpt logs/run.log; ckpt logs/missing.log", tmp_path, tmp_path)
    assert lines == ["s3://b/runs/x/checkpoint_epoch0001", "no-checkpoint-in-logs/missing.log"]
