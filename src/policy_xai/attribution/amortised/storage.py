"""Explainer files (safetensors with the architecture and the policy file's sha256) and the
explainer of a policy object (attached by load_policy when the file next to the weights fits)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...files import file_sha256, network_from_file, read_safetensors
from .student import Explainer, _fingerprint, explain_amortised
from .teacher import BETA, SIZES, STRIDE

FORMAT = "policy_xai.explainer/1"


class ExplainerLoadError(RuntimeError):
    """An explainer file that is missing, corrupt, or not an explainer."""


class ExplainerMismatchError(ExplainerLoadError):
    """An explainer trained for another policy file than the one it is used with."""


def save_explainer(explainer: Explainer, path, policy_path, **metadata) -> Path:
    """Weights + architecture + the policy file's sha256 in one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(policy_path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in explainer.state_dict().items()}
    teacher = {"sizes": list(SIZES), "stride": STRIDE, "beta": BETA, "fill": "median",
               **{k: v for k, v in explainer.meta.items()}}
    meta = {"format": FORMAT, "arch": json.dumps(explainer.arch, sort_keys=True), "policy_sha256": sha,
            "policy_file": Path(policy_path).name, "teacher": json.dumps(teacher, sort_keys=True),
            **{k: str(v) for k, v in metadata.items()}}
    save_file(tensors, str(path), metadata=meta)
    explainer.policy_sha256 = sha
    return path


def load_explainer(path, policy_path=None, policy_sha256: Optional[str] = None) -> Explainer:
    """Load an explainer file; with policy_path (or policy_sha256) check that it was trained for
    that policy file (ExplainerMismatchError otherwise)."""
    path = Path(path)
    meta, state = read_safetensors(path, ExplainerLoadError, "explainer file")
    if meta.get("format") != FORMAT or "arch" not in meta:
        raise ExplainerLoadError(f"{path}: not an explainer file (format {meta.get('format')!r})")
    want = policy_sha256 or (file_sha256(policy_path) if policy_path is not None else None)
    if want is not None and want != meta.get("policy_sha256"):
        raise ExplainerMismatchError(
            f"{path}: trained for the policy file {meta.get('policy_file')!r} with sha256 "
            f"{meta.get('policy_sha256', '?')[:12]}..., but the policy given has sha256 {want[:12]}...; retrain it "
            "(scripts/train_explainers.py)")
    net, arch = network_from_file(path, meta, state, Explainer, ExplainerLoadError)
    net.policy_sha256 = meta.get("policy_sha256", "")
    net.meta = json.loads(meta.get("teacher", "{}"))
    net.eval()
    return net


def time_explainer(explainer: Explainer, height: int = 64, width: int = 64, repeats: int = 50) -> float:
    """Median ms of one explain_amortised call on one image (at the current torch thread count)."""
    from ...device import model_device

    x = torch.rand(1, explainer.arch["channels"], height, width, device=model_device(explainer))
    for _ in range(5):
        explain_amortised(explainer, x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        explain_amortised(explainer, x)
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))



#: the explainer file that belongs to a policy weights file: models/reach.safetensors ->
#: models/reach.explainer.safetensors (load_policy attaches it when it exists and matches)
EXPLAINER_SUFFIX = ".explainer.safetensors"


def explainer_path_for(policy_path) -> Path:
    p = Path(policy_path)
    return p.with_name(p.name[:-len(p.suffix)] + EXPLAINER_SUFFIX if p.suffix else p.name + EXPLAINER_SUFFIX)

def attach_explainer(policy, explainer: Explainer) -> None:
    """Use `explainer` for the methods "occlusion_net" / "occlusion_net_refined" of this policy object,
    for as long as its weights stay the ones it has now."""
    policy._xai_explainer = (explainer, _fingerprint(policy))
    policy._xai_explainer_error = None


def has_explainer(policy) -> bool:
    rec = getattr(policy, "_xai_explainer", None)
    return rec is not None and rec[1] == _fingerprint(policy)


def explainer_of(policy) -> Explainer:
    """The explainer attached to `policy` (ExplainerLoadError / ExplainerMismatchError with the
    reason when there is none that fits)."""
    rec = getattr(policy, "_xai_explainer", None)
    if rec is None:
        why = getattr(policy, "_xai_explainer_error", None) or (
            "no explainer is attached to this policy (load_policy attaches <weights>" + EXPLAINER_SUFFIX
            + " when the file exists)")
        raise ExplainerLoadError(f"the occlusion_net methods need an explainer trained for this policy: {why}; "
                                 "train one with `policy-xai explainer --task TASK --policy WEIGHTS`")
    if rec[1] != _fingerprint(policy):
        raise ExplainerMismatchError("the policy's weights changed (or it is a copy) since its explainer was "
                                     "attached: the explainer describes the original weights only")
    return rec[0]


def attach_for_file(policy, policy_path) -> Optional[Path]:
    """Attach <policy_path stem>.explainer.safetensors to `policy` when it exists and was trained for
    that weights file; returns its path, or None (the reason kept for explainer_of's error)."""
    path = explainer_path_for(policy_path)
    policy._xai_explainer = None
    if not path.is_file():
        policy._xai_explainer_error = f"no explainer file {path} next to the weights"
        return None
    try:
        ex = load_explainer(path, policy_path=policy_path)
    except ExplainerLoadError as e:
        policy._xai_explainer_error = str(e)
        return None
    attach_explainer(policy, ex)
    return path
