"""The state model: a VAE over what the policy observes (camera image and configuration vector).

In the spirit of Rupprecht et al. (../shared/papers/003): an encoder of stride-2 conv stages with
normalisation and ReLU (32 filters, doubling per stage), fully connected mean and log-variance, and a
mirrored decoder of transposed convolutions halving the channels. The configuration vector (in the
policy's normalised units) joins the image features before the latent layer and is decoded from the
latent by a small MLP, so one latent vector z is one whole observation (image, configuration).

Files: safetensors with the architecture, the sha256 of the policy weights file the model was
trained for and what training measured (no pickle). A model trained for other weights is refused
(StateModelMismatchError).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..files import file_sha256, network_from_file, read_safetensors

FORMAT = "policy_xai_states/1"


class StateModelError(ValueError):
    """A state-model file that is missing, corrupt or not a state model."""


class StateModelMismatchError(StateModelError):
    """A state model trained for another policy (weights file sha256) or observation shape."""


def _stage(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


def _up(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())


class StateVAE(nn.Module):
    """(image (B, C, H, W) in [0, 1], normalised configuration (B, D)) <-> latent z (B, latent).

    Architecture parameters (stored in the file): channels, height, width, config_dim, latent,
    stages (H and W must be divisible by 2**stages), width (filters of the first stage)."""

    def __init__(self, channels: int = 3, height: int = 64, width: int = 64, config_dim: int = 14,
                 latent: int = 32, stages: int = 4, filters: int = 32, config_hidden: int = 64):
        super().__init__()
        if height % (2 ** stages) or width % (2 ** stages):
            raise StateModelError(f"image {height}x{width} is not divisible by 2**stages = {2 ** stages}")
        self.arch = {"channels": int(channels), "height": int(height), "width": int(width),
                     "config_dim": int(config_dim), "latent": int(latent), "stages": int(stages),
                     "filters": int(filters), "config_hidden": int(config_hidden)}
        chans = [filters * 2 ** i for i in range(stages)]
        enc, c = [], channels
        for k in chans:
            enc.append(_stage(c, k))
            c = k
        self.encoder = nn.Sequential(*enc)
        self.grid = (height // 2 ** stages, width // 2 ** stages)
        flat = c * self.grid[0] * self.grid[1]
        self.config_enc = nn.Sequential(nn.Linear(config_dim, config_hidden), nn.ReLU()) if config_dim else None
        joint = flat + (config_hidden if config_dim else 0)
        self.mu = nn.Linear(joint, latent)
        self.logvar = nn.Linear(joint, latent)
        self.dec_fc = nn.Sequential(nn.Linear(latent, flat), nn.ReLU())
        dec = []
        for k_in, k_out in zip(chans[::-1][:-1], chans[::-1][1:]):
            dec.append(_up(k_in, k_out))
        self.decoder = nn.Sequential(*dec)
        self.to_image = nn.ConvTranspose2d(chans[0], channels, 4, stride=2, padding=1)
        self.config_dec = (nn.Sequential(nn.Linear(latent, config_hidden), nn.ReLU(),
                                         nn.Linear(config_hidden, config_dim)) if config_dim else None)
        self.policy_sha256 = ""
        self.meta: dict = {}

    @property
    def latent(self) -> int:
        return self.arch["latent"]

    def encode(self, image: torch.Tensor, config_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(image).flatten(1)
        if self.config_enc is not None:
            h = torch.cat([h, self.config_enc(config_n)], 1)
        return self.mu(h), self.logvar(h).clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, latent) -> (image (B, C, H, W) in [0, 1], normalised configuration (B, D))."""
        c = self.arch["filters"] * 2 ** (self.arch["stages"] - 1)
        h = self.dec_fc(z).view(-1, c, *self.grid)
        img = torch.sigmoid(self.to_image(self.decoder(h)))
        cfg = self.config_dec(z) if self.config_dec is not None else z.new_zeros(z.shape[0], 0)
        return img, cfg

    def forward(self, image: torch.Tensor, config_n: torch.Tensor, sample: bool = True):
        mu, logvar = self.encode(image, config_n)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        img, cfg = self.decode(z)
        return img, cfg, mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


# ---- files ------------------------------------------------------------------------------------------
def save_state_model(model: StateVAE, path, policy_path, **metadata) -> Path:
    """Weights, architecture, the policy file's sha256 and `metadata` (JSON-able values) in one file.
    Never overwrites: an existing path is an error."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(policy_path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "arch": json.dumps(model.arch, sort_keys=True), "policy_sha256": sha,
            "policy_file": Path(policy_path).name,
            "meta": json.dumps({**model.meta, **metadata}, sort_keys=True, default=str)}
    save_file(tensors, str(path), metadata=meta)
    model.policy_sha256 = sha
    return path


def load_state_model(path, policy_path=None, spec=None) -> StateVAE:
    """Load a state model; with `policy_path` check it was trained for that weights file, with
    `spec` that it takes that policy's image size and configuration length."""
    path = Path(path)
    meta, state = read_safetensors(path, StateModelError, "state model")
    if meta.get("format") != FORMAT or "arch" not in meta:
        raise StateModelError(f"{path}: not a policy_xai state model (format {meta.get('format')!r})")
    if policy_path is not None:
        want = file_sha256(policy_path)
        if want != meta.get("policy_sha256"):
            raise StateModelMismatchError(
                f"{path}: trained for the policy file {meta.get('policy_file')!r} (sha256 "
                f"{meta.get('policy_sha256', '?')[:12]}...), not for {Path(policy_path).name} (sha256 {want[:12]}...); "
                "train one for it with `policy-xai states train`")
    model, arch = network_from_file(path, meta, state, StateVAE, StateModelError)
    if spec is not None:
        want = (spec.image_channels, spec.image_height, spec.image_width, spec.config_dim)
        got = (arch["channels"], arch["height"], arch["width"], arch["config_dim"])
        if want != got:
            raise StateModelMismatchError(f"{path}: models observations {got[1]}x{got[2]}x{got[0]} with {got[3]} "
                                          f"configuration values; the policy takes {want[1]}x{want[2]}x{want[0]} "
                                          f"with {want[3]}")
    model.policy_sha256 = meta.get("policy_sha256", "")
    model.meta = json.loads(meta.get("meta", "{}"))
    model.eval()
    return model


def state_model_for(spec, latent: int = 32, stages: Optional[int] = None, filters: int = 32) -> StateVAE:
    """A StateVAE shaped for a policy spec (stages: 4 when the image allows, else fewer)."""
    h, w = spec.image_height, spec.image_width
    if stages is None:
        stages = 4
        while stages > 1 and (h % 2 ** stages or w % 2 ** stages):
            stages -= 1
    return StateVAE(spec.image_channels, h, w, spec.config_dim, latent, stages, filters)
