"""`policy-xai explainer`: a short real training run (MuJoCo rollouts of a shipped policy, dense
occlusion teacher, student) writes an explainer that load_policy attaches and `explain` uses;
bad arguments are one-line errors and an existing file is never overwritten."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from policy_xai.attribution import amortised as A
from policy_xai.attribution import explain
from policy_xai.cli import main
from policy_xai.policy import load_policy

MODELS = Path(__file__).resolve().parents[1] / "models"
FAST = ["--episodes", "1", "--every", "40", "--states", "3", "--epochs", "2", "--sizes", "8"]


def test_explainer_command_trains_a_file_that_load_policy_attaches(tmp_path, capsys):
    w = tmp_path / "mine.safetensors"
    shutil.copy(MODELS / "reach2d.safetensors", w)
    assert not A.has_explainer(load_policy(w))
    assert main(["explainer", "--task", "reach2d", "--policy", str(w), "--seeds", "1", *FAST]) == 0
    out = tmp_path / "mine.explainer.safetensors"
    assert out.is_file() and "wrote" in capsys.readouterr().out
    p = load_policy(w)
    assert A.has_explainer(p) and A.explainer_of(p).meta["train_states"] == 3
    img = torch.rand(1, 3, p.spec.image_height, p.spec.image_width)
    e = explain(p, img, p.prepare_config(np.zeros(p.spec.config_dim)), "occlusion_net")
    assert e.image.shape == (1, p.spec.image_height, p.spec.image_width)
    # never overwritten: a second run refuses before any rollout
    before = out.read_bytes()
    r = subprocess.run([sys.executable, "-m", "policy_xai.cli", "explainer", "--task", "reach2d", "--policy", str(w),
                        *FAST], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "never overwritten" in r.stderr and out.read_bytes() == before


def test_explainer_command_bad_arguments(tmp_path):
    w = tmp_path / "mine.safetensors"
    shutil.copy(MODELS / "reach2d.safetensors", w)
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"nope")
    for args, msg in ((["--task", "fly", "--policy", str(w)], "choose from"),
                      (["--task", "reach2d", "--policy", str(w), "--seeds", "0"], "held-out"),
                      (["--task", "reach2d", "--policy", str(tmp_path / "missing.safetensors")], "not found"),
                      (["--task", "reach2d", "--policy", str(bad)], "corrupt.safetensors")):
        r = subprocess.run([sys.executable, "-m", "policy_xai.cli", "explainer", *args], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
    assert not list(tmp_path.glob("*.explainer.safetensors"))
