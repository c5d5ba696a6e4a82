"""The visuomotor policy network (Kim & Choi, Fig. 1) and its safe (de)serialisation.

image (B, C, H, W) in [0, 1] -> conv+ReLU stack (or a ResNet-family trunk + 1x1 keypoint conv, spec
`trunk:`) -> spatial softmax -> K feature points (x, y) in
[-1, 1] -> concat with the normalised configuration vector -> FC+ReLU layers -> one torque per joint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .spec import PolicySpec, load_spec

FORMAT = "policy_xai/1"


class PolicyLoadError(RuntimeError):
    """A weights file that is missing, corrupt, or does not match the spec."""


class ObservationError(ValueError):
    """An observation the policy cannot take (wrong size, encoding, NaN, unknown joints)."""


class SpatialSoftmax(nn.Module):
    """Per channel: softmax over the pixels, then the expected (x, y) pixel coordinate.

    Output (B, 2K) ordered [x_0, y_0, x_1, y_1, ...]; coordinates in [-1, 1] (left/top = -1).
    """

    def __init__(self, height: int, width: int, temperature: float = 1.0):
        super().__init__()
        self.height, self.width, self.temperature = height, width, float(temperature)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("pos", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)

    def attention(self, a: torch.Tensor) -> torch.Tensor:
        """Softmax weights (B, K, H*W) of feature maps a (B, K, H, W)."""
        return torch.softmax(a.flatten(2) / self.temperature, dim=-1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        p = self.attention(a)
        return (p @ self.pos).flatten(1)  # (B, K, 2) -> (B, 2K)


def flush_denormals() -> None:
    """Flush denormal floats to zero in this thread (and the threads it starts later; torch's flag).

    A trained spatial softmax concentrates its attention: exp() of the far-off pixels underflows into
    the denormal range, and x86 arithmetic on denormals is microcoded. Measured on the shipped door
    policy (1 thread, real door images): training 54 -> 386 samples/s; dtd explanation of a recorded
    door run 8.8 -> 7.3 ms p50. Values below 1.2e-38 become 0; nothing else changes. Called when a policy is built, so
    the nodes, the commands and training all run with it."""
    torch.set_flush_denormal(True)


class VisuomotorPolicy(nn.Module):
    def __init__(self, spec: "PolicySpec | Mapping | str"):
        super().__init__()
        flush_denormals()
        self.spec = spec = load_spec(spec)
        if spec.trunk is None:
            convs, c_in = [], spec.image_channels
            for c in spec.conv:
                convs.append(nn.Conv2d(c_in, c.channels, c.kernel, stride=c.stride))
                c_in = c.channels
            self.convs = nn.ModuleList(convs)
            # one ReLU module per layer (no reuse), so that hook-based libraries (captum, zennit) see them
            self.conv_relus = nn.ModuleList(nn.ReLU() for _ in convs)
        else:  # a ResNet-family trunk, then a 1x1 conv to the keypoint maps (no ReLU: robomimic's layout)
            from .attribution.graph.models import ResNetTrunk

            t = spec.trunk
            self.trunk = ResNetTrunk(spec.image_channels, t.width, t.norm, t.blocks)
            self.keypoints = nn.Conv2d(self.trunk.out_channels, spec.feature_points, 1)
        h, w = spec.conv_output_size()
        self.softmax = SpatialSoftmax(h, w, spec.softmax_temperature)
        sizes = [2 * spec.feature_points + spec.config_dim, *spec.hidden, spec.n_joints]
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc_relus = nn.ModuleList(nn.ReLU() for _ in self.fcs[:-1])
        # configuration normalisation (set from training data; part of the saved weights)
        self.register_buffer("config_mean", torch.zeros(spec.config_dim))
        self.register_buffer("config_std", torch.ones(spec.config_dim))
        self.register_buffer("torque_limits", torch.tensor(spec.torque_limits, dtype=torch.float32))
        self.eval()

    # ---- forward ---------------------------------------------------------------------------
    @property
    def plain(self) -> bool:
        """True for the plain conv+ReLU stack (`convs`), False for a ResNet-family trunk (`trunk`)."""
        return self.spec.trunk is None

    def conv_features(self, image: torch.Tensor) -> torch.Tensor:
        x = image.contiguous(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
        if self.spec.trunk is not None:
            return self.keypoints(self.trunk(x))
        for conv, relu in zip(self.convs, self.conv_relus):
            x = relu(conv(x))
        return x

    def normalise_config(self, config: torch.Tensor) -> torch.Tensor:
        return (config - self.config_mean) / self.config_std

    def head(self, points: torch.Tensor, config_n: torch.Tensor) -> torch.Tensor:
        h = torch.cat([points, config_n], dim=1)
        for fc, relu in zip(self.fcs[:-1], self.fc_relus):
            h = relu(fc(h))
        return self.fcs[-1](h)

    def forward(self, image: torch.Tensor, config: torch.Tensor) -> torch.Tensor:
        """Torques (B, J) for images (B, C, H, W) in [0, 1] and raw configurations (B, D)."""
        return self.head(self.softmax(self.conv_features(image)), self.normalise_config(config))

    def feature_points(self, image: torch.Tensor) -> torch.Tensor:
        """(B, K, 2) feature points (x, y) in [-1, 1]."""
        return self.softmax(self.conv_features(image)).view(image.shape[0], -1, 2)

    # ---- observations from numpy -------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the network's tensors live (place_policy moves them); observations are made there."""
        return self.config_mean.device

    def prepare_image(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, C) or (B, H, W, C) uint8 RGB (or float in [0, 1]) -> (B, C, H, W) float tensor on
        the policy's device."""
        s = self.spec
        arr = np.asarray(image)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ObservationError(f"image must be HxWxC or BxHxWxC, got shape {np.shape(image)}")
        if arr.shape[1:] != (s.image_height, s.image_width, s.image_channels):
            raise ObservationError(
                f"image is {arr.shape[1]}x{arr.shape[2]}x{arr.shape[3]}, policy {s.name!r} expects "
                f"{s.image_height}x{s.image_width}x{s.image_channels} (resize it first, e.g. with cv2.resize, "
                "or pass --resize / the nodes' resize parameter)"
            )
        dev = self.device
        if arr.dtype == np.uint8:  # the uint8 bytes travel to the device (4x less than float32)
            t = torch.from_numpy(np.ascontiguousarray(arr)).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
        elif np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)):
                raise ObservationError("image contains NaN or infinite values")
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).to(dev).permute(0, 3, 1, 2)
        else:
            raise ObservationError(f"image dtype {arr.dtype} not supported (uint8 RGB or float in [0, 1])")
        return t.contiguous()

    def prepare_config(self, config: "np.ndarray | Mapping[str, Sequence[float]]") -> torch.Tensor:
        """Flat (D,) / (B, D) vector, or a dict group -> values (all of the spec's groups) -> (B, D)
        float32 tensor on the policy's device."""
        s = self.spec
        if isinstance(config, Mapping):
            unknown = sorted(set(config) - set(s.group_names))
            missing = [g for g in s.group_names if g not in config]
            if unknown or missing:
                raise ObservationError(
                    f"configuration groups: unknown {unknown}, missing {missing}; policy {s.name!r} takes "
                    f"{list(s.group_names)}"
                )
            parts = []
            for g, n in s.config_groups:
                v = np.asarray(config[g], dtype=np.float32)
                v = v[None] if v.ndim == 1 else v
                if v.shape[-1] != n:
                    raise ObservationError(f"configuration group {g!r} has {v.shape[-1]} values, expected {n}")
                parts.append(v)
            B = max(v.shape[0] for v in parts)
            try:
                arr = np.concatenate([np.broadcast_to(v, (B, v.shape[-1])) for v in parts], axis=-1)
            except ValueError as e:
                raise ObservationError(f"configuration groups have different batch sizes: {e}") from e
        else:
            arr = np.asarray(config, dtype=np.float32)
            arr = arr[None] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != s.config_dim:
            raise ObservationError(f"configuration has shape {np.shape(arr)}, expected (B, {s.config_dim})")
        if not np.all(np.isfinite(arr)):
            raise ObservationError("configuration contains NaN or infinite values")
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)

    @torch.no_grad()
    def act(self, image: np.ndarray, config) -> np.ndarray:
        """Torques for one observation (numpy in, numpy out, clipped to the torque limits)."""
        tau = self(self.prepare_image(image), self.prepare_config(config))[0]
        return torch.clamp(tau, -self.torque_limits, self.torque_limits).cpu().numpy().astype(np.float64)


# ---- save / load -------------------------------------------------------------------------------
def save_policy(policy: VisuomotorPolicy, path: "str | Path", **metadata: str) -> Path:
    """Weights + spec in one safetensors file (no pickle)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
    meta = {"format": FORMAT, "spec": policy.spec.to_json(), **{k: str(v) for k, v in metadata.items()}}
    save_file(tensors, str(path), metadata=meta)
    return path


def read_metadata(path: "str | Path") -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds on corrupt files
        raise PolicyLoadError(f"{path}: not a readable safetensors weights file ({e})") from e


def place_policy(policy: VisuomotorPolicy, device=None) -> VisuomotorPolicy:
    """Move `policy` (in place) to `device` (a torch.device, or a string for policy_xai.device.parse_device:
    DeviceError when it is not usable here), with the occlusion explainer attached to it, which stays
    attached (it was trained for these weights, wherever they are). None: where it is. Returns it."""
    from .attribution import amortised
    from .device import parse_device

    if device is None:
        return policy
    dev = device if isinstance(device, torch.device) else parse_device(device)
    ex = amortised.explainer_of(policy) if amortised.has_explainer(policy) else None
    policy.to(dev)
    if ex is not None:
        amortised.attach_explainer(policy, ex.to(dev))
    return policy


def load_policy(path: "str | Path", spec: "PolicySpec | Mapping | str | None" = None,
                device=None) -> VisuomotorPolicy:
    """Load a policy saved by save_policy. If `spec` is given, the file must match it. device: where
    it runs (place_policy; None = the CPU, where the file is read)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise PolicyLoadError(f"policy weights file not found: {path}")
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "spec" not in meta:
        raise PolicyLoadError(f"{path}: no policy_xai spec in the file's metadata (format {meta.get('format')!r})")
    stored = _stored_spec(path, meta)
    if spec is not None:
        wanted = load_spec(spec)
        if wanted != stored:
            diff = [k for k, v in wanted.to_dict().items() if stored.to_dict().get(k) != v]
            raise PolicyLoadError(f"{path}: weights were saved for spec {stored.name!r}, which differs from "
                                  f"the requested spec {wanted.name!r} in: {', '.join(diff)}")
    policy = VisuomotorPolicy(stored)
    try:
        state = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise PolicyLoadError(f"{path}: corrupt weights ({e})") from e
    own = policy.state_dict()
    bad = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    extra = [k for k in state if k not in own]
    if bad or extra:
        raise PolicyLoadError(f"{path}: tensors do not match the spec {stored.name!r}: "
                              f"missing/mis-shaped {bad}, unexpected {extra}")
    check_tensors(path, state, stored)
    policy.load_state_dict(state)
    policy.eval()
    from .attribution.amortised import attach_for_file

    attach_for_file(policy, path)  # <weights>.explainer.safetensors, for the amortised methods
    return place_policy(policy, device)


def _json_kind(x) -> str:
    return {list: "array", str: "string", type(None): "null", bool: "boolean", int: "number",
            float: "number"}.get(type(x), type(x).__name__)


def _stored_spec(path: Path, meta: dict) -> PolicySpec:
    """The spec in a weights file's metadata, validated like a YAML spec (PolicyLoadError naming what is wrong)."""
    import json

    from .spec import SpecError

    def parse(key: str):
        try:
            return json.loads(meta[key])
        except ValueError as e:
            raise PolicyLoadError(f"{path}: the {key!r} entry of the file's metadata is not valid JSON ({e})") from None

    stored_dict = parse("spec")
    if not isinstance(stored_dict, dict):
        raise PolicyLoadError(f"{path}: the spec in the file's metadata must be a JSON object, got a JSON "
                              f"{_json_kind(stored_dict)}")
    if "config_groups" in meta:  # files written before specs kept the group order in "spec" itself
        stored_dict["config_groups"] = parse("config_groups")
    try:
        return load_spec(stored_dict)
    except SpecError as e:
        raise PolicyLoadError(f"{path}: bad spec in the file's metadata: {e}") from None


def check_tensors(path, state: Mapping[str, torch.Tensor], spec: PolicySpec) -> None:
    """Every floating-point tensor finite; config_std positive; the torque_limits tensor the spec's.
    A file failing these would load and command NaN (or unclipped) torques."""
    bad = []
    for k, t in state.items():
        if t.is_floating_point():
            n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            if n_nan or n_inf:
                bad.append(f"{k} ({n_nan} NaN, {n_inf} inf of {t.numel()})")
    if bad:
        raise PolicyLoadError(f"{path}: tensors with non-finite values: {', '.join(bad)}")
    std = state.get("config_std")
    if std is not None and bool((std <= 0).any()):
        idx = torch.nonzero(std <= 0).flatten().tolist()
        raise PolicyLoadError(f"{path}: config_std must be positive (the configuration is divided by it); "
                              f"element {', '.join(map(str, idx))} is {', '.join(f'{float(std[i]):g}' for i in idx)}")
    lim = state.get("torque_limits")
    if lim is not None:
        want = torch.tensor(spec.torque_limits, dtype=lim.dtype)
        if not torch.allclose(lim, want, rtol=1e-6, atol=0.0):
            raise PolicyLoadError(f"{path}: the torque_limits tensor {lim.tolist()} differs from the torque_limits "
                                  f"of the file's spec {list(spec.torque_limits)}")


def init_policy(spec, seed: int = 0, device=None) -> VisuomotorPolicy:
    """A freshly initialised policy (deterministic for a seed: initialised on the CPU, then placed
    on `device`, so every device gets the same weights)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        policy = VisuomotorPolicy(spec)
    finally:
        torch.random.set_rng_state(gen_state)
    return place_policy(policy, device)
