"""Hand-built policies whose behaviour is known exactly (real VisuomotorPolicy networks, weights set
by hand), shared by the faithfulness and amortised-explainer tests."""
import torch

from policy_xai.policy import init_policy


def blob_policy(bias: float = 2.0, size: int = 16):
    """3 x size x size image -> one 1x1 conv channel relu(r - g - b) (grey: -0.5 -> 0, red: 1 -> 1) ->
    spatial softmax at temperature 0.05 (a red pixel weighs e^20 against a grey one: the point sits
    on the blob's centroid; no red at all: uniform attention, point (0, 0)) -> fc layers
    h = relu(x + bias, y + bias) (always active for x, y in [-1, 1] when bias >= 1),
    tau_a = 2 h_0 - 2 bias = 2x, tau_b = bias - h_1 = -y. The configuration (2 values) has zero
    weights: no influence. Another bias: other weights, the same torques and architecture."""
    spec = {"name": "blob", "image": {"channels": 3, "height": size, "width": size},
            "conv": [{"channels": 1, "kernel": 1}], "feature_points": 1, "softmax_temperature": 0.05,
            "config_groups": {"joint_position": 2}, "hidden": [2], "joint_names": ["a", "b"],
            "torque_limits": [10.0, 10.0]}
    p = init_policy(spec, seed=0)
    with torch.no_grad():
        p.convs[0].weight.copy_(torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1))
        p.convs[0].bias.zero_()
        p.fcs[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        p.fcs[0].bias.fill_(bias)
        p.fcs[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        p.fcs[1].bias.copy_(torch.tensor([-2.0 * bias, bias]))
    return p


class WithSigmoid(torch.nn.Module):
    """{"state": (B, 4)} -> (B, 2) through a Sigmoid: an op the graph engine has no rule for."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid())
        self.out = torch.nn.Linear(4, 2)

    def forward(self, obs):
        return self.out(self.enc(obs["state"]))


def first_torque(torques, observation):
    """A user's target for `policy-xai states find --target hand_policies:first_torque`."""
    return torques[:, 0]
