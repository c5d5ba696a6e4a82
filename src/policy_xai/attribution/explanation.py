"""What every attribution method returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

#: name of the image group in ratio dictionaries
IMAGE = "image"


@dataclass
class Explanation:
    """Explanation of a batch of B observations (the amortised sum over joints).

    image:    (B, H, W) per-pixel relevance (summed over colour channels)
    config:   (B, D) relevance per configuration feature (the network's normalised inputs)
    points:   (B, K) relevance per spatial-softmax feature point (x and y together), or None
    torques:  (B, J) the network's torques for these observations (unclipped)
    alpha:    (B, J) importance factors used (1 where no robot model was given)
    ratios:   group name -> (B,) share of total absolute relevance; groups are "image" and the
              spec's configuration groups; sum to 1 per observation. None for the Grad-CAM family,
              which localises within the image only.
    per_joint_image / per_joint_config: (B, J, H, W) / (B, J, D) per-torque explanations before
              amortisation, when requested.
    """

    method: str
    image: torch.Tensor
    config: torch.Tensor
    points: Optional[torch.Tensor]
    torques: torch.Tensor
    alpha: torch.Tensor
    ratios: Optional[dict[str, torch.Tensor]]
    group_names: tuple[str, ...] = ()
    feature_points: Optional[torch.Tensor] = None  # (B, K, 2) the feature point coordinates
    per_joint_image: Optional[torch.Tensor] = None
    per_joint_config: Optional[torch.Tensor] = None
    extras: dict = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.torques.shape[0])

    def ratio_array(self) -> np.ndarray:
        """(B, 1 + n_groups) ratios in the order ("image", *group_names); NaN if undefined."""
        names = (IMAGE, *self.group_names)
        if self.ratios is None:
            return np.full((self.batch_size, len(names)), np.nan)
        return np.stack([self.ratios[n].detach().cpu().numpy() for n in names], axis=1)

    def ratio_names(self) -> tuple[str, ...]:
        return (IMAGE, *self.group_names)

    def select(self, i: int) -> "Explanation":
        """The i-th observation of the batch, as a batch of one."""
        s = slice(i, i + 1)
        opt = lambda t: None if t is None else t[s]  # noqa: E731
        return Explanation(
            method=self.method, image=self.image[s], config=self.config[s], points=opt(self.points),
            torques=self.torques[s], alpha=self.alpha[s],
            ratios=None if self.ratios is None else {k: v[s] for k, v in self.ratios.items()},
            group_names=self.group_names, feature_points=opt(self.feature_points),
            per_joint_image=opt(self.per_joint_image), per_joint_config=opt(self.per_joint_config),
            extras=dict(self.extras),
        )
