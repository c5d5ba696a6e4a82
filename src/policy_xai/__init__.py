"""policy_xai: explanations of deep visuomotor robot policies (core; never imports rclpy)."""

__version__ = "0.1.0"

from .spec import PolicySpec, SpecError, load_spec  # noqa: E402,F401
from .policy import VisuomotorPolicy, PolicyLoadError, ObservationError, load_policy, save_policy  # noqa: E402,F401
