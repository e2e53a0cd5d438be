"""`raypose <command>`: every command listed, documented with an example, and the same code path
as its `jobs/*.py` twin (kept for `ray job submit -- python jobs/….py`)."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from raypose import cli

REPO = Path(__file__).resolve().parents[2]
JOB_OF = {"prepare": "prepare_data.py", "pretrain": "pretrain.py", "finetune": "finetune.py",
          "evaluate": "evaluate.py", "tune": "tune.py", "infer": "infer.py", "export": "export_model.py",
          "image-lift": "train_image_lift.py", "complete": "complete.py"}


def test_the_console_script_lists_every_command_and_its_version():
    script = Path(sys.executable).parent / "raypose"          # installed by pip install -e .
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("prepare", "pretrain", "finetune", "evaluate", "tune", "infer", "plot", "export"):
        assert f"    {name}" in out, name
    assert "examples:" in out
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("raypose 0.")


def test_an_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["pretrian"])
    assert e.value.code == 2 and "invalid choice: 'pretrian'" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_says_what_it_does_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert out.startswith(f"usage: raypose {name}")
    assert f"    raypose {name}" in out                       # an example line to copy
    module = importlib.import_module(f"raypose.commands.{cli.COMMANDS[name][0]}")
    if getattr(module, "TAKES_CONFIG", True):
        assert "--config" in out and "--set" in out


@pytest.mark.parametrize("name", list(JOB_OF))
def test_each_job_is_its_command(name, script, capsys):
    """A job parses and runs through the command's own module: same options, same help."""
    job = script(f"jobs/{JOB_OF[name]}")
    command = importlib.import_module(f"raypose.commands.{cli.COMMANDS[name][0]}")
    assert job.command is command
    for run in (lambda: cli.main([name, "--help"]), lambda: job.main(["--help"])):
        with pytest.raises(SystemExit):
            run()
    via_cli, via_job = capsys.readouterr().out.split(f"usage: python jobs/{JOB_OF[name]}")
    assert " ".join(via_cli.replace(f"usage: raypose {name}", "").split()) == " ".join(via_job.split())


def test_evaluate_with_no_arguments_scores_the_shipped_model_on_real_detections(shared_data, capsys):
    result = cli.main(["evaluate"])
    out = capsys.readouterr().out
    assert result == 0 and "pose2sim_demo.npz (real detections" in out and "the shipped model" in out
    assert "| all    |    400 |" in out


def test_a_data_error_is_a_message_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", "--split", "val"])              # the shipped model's config has no val split
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "split 'val' has no sequences" in err
    assert "Traceback" not in err
