"""user_explainer_node: the user_policy_node with act:=false, in a process of its own.

It subscribes to the same mapped topics as the user_policy_node that drives the robot (run with
explain:=false), pairs the same messages by the same stamps, and explains each decision with its own
copy of the model; it never publishes actions or commands (so a factory model without weights is
allowed here: it drives nothing). See policy_xai.ros.user_policy_node.
"""
from __future__ import annotations

from .common import main as run_node
from .user_policy_node import UserPolicyNode


class UserExplainerNode(UserPolicyNode):
    def __init__(self):
        super().__init__("user_explainer_node")


def main(args=None) -> int:
    return run_node(UserExplainerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
