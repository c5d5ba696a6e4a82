"""Reference architectures in plain torch (torchvision does not import next to torch 2.13 here).

- `BCPolicy`: robomimic-style visuomotor behaviour cloning: per camera a ResNet-18-like trunk
  (7x7/2 stem conv, BatchNorm, ReLU, 3x3/2 max-pool, 4 stages of 2 residual BasicBlocks, no final
  pooling) -> 1x1 conv to 32 keypoints -> spatial soft-argmax (optional learnable temperature) ->
  Flatten -> Linear(64, 64), concatenated with the low-dimensional observations -> MLP -> actions
  (robomimic's actor squashes them with tanh).
- `norm="group"`: the LeRobot / Diffusion Policy variant (GroupNorm, keypoints without temperature,
  Linear + ReLU after the keypoints); `norm="frozen"`: ACT's frozen BatchNorm, a plain Module.
- two cameras: `cameras=("agentview_image", "robot0_eye_in_hand_image")`, one encoder each.

`width` scales the trunk (64 = ResNet-18); tests use width 4. The observation is a dict
name -> tensor (B, ...); images (B, 3, H, W), state vectors (B, n).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, all buffers (ACT / DETR style)."""

    def __init__(self, n: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(n))
        self.register_buffer("bias", torch.zeros(n))
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("running_var", torch.ones(n))

    def reset_parameters(self):
        """The identity (as a fresh BatchNorm; the model-randomisation sanity check calls it)."""
        for name, v in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            getattr(self, name).fill_(v)

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def make_norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "group":
        return nn.GroupNorm(max(1, c // 16), c)
    if kind == "frozen":
        return FrozenBatchNorm2d(c)
    raise ValueError(f"norm must be batch, group or frozen, got {kind!r}")


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = make_norm(norm, c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = make_norm(norm, c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), make_norm(norm, c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """ResNet-18 without its average pool and classifier: (B, C, H, W) -> (B, 8 width, H/32, W/32).

    `blocks` gives the BasicBlocks of each stage (`layer1`, `layer2`, ...; stage i has width * 2**i
    channels and, after the first, stride 2); fewer stages give finer maps (2 stages: H/8)."""

    def __init__(self, in_channels: int = 3, width: int = 64, norm: str = "batch",
                 blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        if not blocks or any(int(n) < 1 for n in blocks):
            raise ValueError(f"blocks must be one positive count per stage, got {list(blocks)}")
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = make_norm(norm, width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = width
        self.n_stages = len(blocks)
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            stage = [BasicBlock(c, c_out, 1 if i == 0 else 2, norm)]
            stage += [BasicBlock(c_out, c_out, 1, norm) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            c = c_out
        self.out_channels = c

    @staticmethod
    def output_size(height: int, width: int, stages: int) -> tuple:
        """Feature map size for an input of height x width: the stem conv and the max-pool halve it
        (rounding up), and so does every stage after the first."""
        def half(n):
            return (n - 1) // 2 + 1

        for _ in range(2 + stages - 1):
            height, width = half(height), half(width)
        return height, width

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


class SpatialSoftArgmax(nn.Module):
    """Keypoints: optional 1x1 conv `nets` to K maps, softmax over each map's pixels (divided by the
    temperature, learnable or fixed), expected (x, y) in [-1, 1]; output (B, K, 2). The attribute
    layout (nets, pos_x, pos_y, temperature) is robomimic's, which the graph engine recognises."""

    def __init__(self, in_channels: int, height: int, width: int, num_kp: int = 32, temperature: float = 1.0,
                 learnable_temperature: bool = False):
        super().__init__()
        self.nets = nn.Conv2d(in_channels, num_kp, 1) if num_kp is not None else None
        self.num_kp = num_kp if num_kp is not None else in_channels
        t = torch.ones(1) * temperature
        if learnable_temperature:
            self.temperature = nn.Parameter(t)
        else:
            self.register_buffer("temperature", t)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("pos_x", xs.reshape(1, -1))
        self.register_buffer("pos_y", ys.reshape(1, -1))

    def forward(self, feature):
        if self.nets is not None:
            feature = self.nets(feature)
        att = torch.softmax(feature.flatten(2) / self.temperature, dim=-1)  # (B, K, HW)
        pos = torch.stack([self.pos_x.reshape(-1), self.pos_y.reshape(-1)], dim=1)
        return att @ pos  # (B, K, 2)


class VisualCore(nn.Module):
    """One camera: trunk -> keypoints -> Flatten -> Linear(2K, feature_dim) (+ ReLU)."""

    def __init__(self, image_shape=(3, 84, 84), width: int = 64, norm: str = "batch", num_kp: int = 32,
                 feature_dim: int = 64, temperature: float = 1.0, learnable_temperature: bool = False,
                 relu: bool = False, blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        c, h, w = image_shape
        self.backbone = ResNetTrunk(c, width, norm, blocks)
        with torch.no_grad():
            fh, fw = self.backbone.eval()(torch.zeros(1, c, h, w)).shape[2:]
        self.pool = SpatialSoftArgmax(self.backbone.out_channels, fh, fw, num_kp, temperature, learnable_temperature)
        self.flatten = nn.Flatten(1)
        self.linear = nn.Linear(2 * num_kp, feature_dim)
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        return self.act(self.linear(self.flatten(self.pool(self.backbone(x)))))


class BCPolicy(nn.Module):
    """robomimic-style BC policy over a dict observation: cameras -> VisualCore each; state vectors
    concatenated in `low_dim` order -> MLP (ReLU) -> actions (tanh unless tanh=False)."""

    def __init__(self, cameras: Sequence[str] = ("agentview_image",), image_shape=(3, 84, 84),
                 low_dim: "Mapping[str, int]" = None, action_dim: int = 7, width: int = 64, norm: str = "batch",
                 num_kp: int = 32, feature_dim: int = 64, hidden: Sequence[int] = (1024, 1024),
                 temperature: float = 1.0, learnable_temperature: bool = False, visual_relu: bool = False,
                 tanh: bool = True, blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        self.cameras = tuple(cameras)
        self.low_dim = dict(low_dim if low_dim is not None else
                            {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2})
        self.encoders = nn.ModuleDict({cam: VisualCore(image_shape, width, norm, num_kp, feature_dim, temperature,
                                                       learnable_temperature, visual_relu, blocks)
                                       for cam in self.cameras})
        sizes = [feature_dim * len(self.cameras) + sum(self.low_dim.values()), *hidden]
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.action = nn.Linear(sizes[-1], action_dim)
        self.tanh = tanh

    def forward(self, obs):
        feats = [self.encoders[cam](obs[cam]) for cam in self.cameras]
        feats += [obs[k] for k in self.low_dim]
        a = self.action(self.mlp(torch.cat(feats, dim=-1)))
        return torch.tanh(a) if self.tanh else a


def robomimic_bc(width: int = 64, image_size: int = 84, **kw) -> BCPolicy:
    """robomimic's default visuomotor BC (BatchNorm trunk, keypoints, Linear(64, 64), MLP 1024-1024)."""
    return BCPolicy(image_shape=(3, image_size, image_size), width=width, **kw)


def groupnorm_bc(width: int = 64, image_size: int = 84, **kw) -> BCPolicy:
    """LeRobot / Diffusion Policy encoder: GroupNorm trunk, keypoints without temperature, Linear + ReLU."""
    kw.setdefault("visual_relu", True)
    return BCPolicy(image_shape=(3, image_size, image_size), width=width, norm="group", **kw)


def two_camera_bc(width: int = 64, image_size: int = 84, **kw) -> BCPolicy:
    kw.setdefault("cameras", ("agentview_image", "robot0_eye_in_hand_image"))
    return BCPolicy(image_shape=(3, image_size, image_size), width=width, **kw)


def example_observation(model: BCPolicy, batch: int = 1, image_size: int = 84, generator=None) -> dict:
    obs = {cam: torch.rand(batch, 3, image_size, image_size, generator=generator) for cam in model.cameras}
    obs.update({k: torch.randn(batch, n, generator=generator) for k, n in model.low_dim.items()})
    return obs


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm layer non-trivial statistics and affine parameters (tests: folding must matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(m, name, None)
                if not torch.is_tensor(t) or not isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, FrozenBatchNorm2d)):
                    continue
                if name == "running_var":
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name == "weight":
                    t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.25)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model
