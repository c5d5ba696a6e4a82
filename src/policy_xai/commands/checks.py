"""The argument checks live in the core (policy_xai.checks), where the library jobs use them too;
re-exported here for the commands."""
from __future__ import annotations

from ..checks import (  # noqa: F401 - re-exported
    DEVICE_HELP, UsageError, add_device_option, bag_root, device_arg, domain_id, fraction, guard_outputs, input_file,
    input_path, int_list, new_bag_dir, new_file, nonnegative_float, nonnegative_int, policy_and_recording, policy_arg,
    policy_input, positive_float, positive_int, positive_int_list, real, writable_dir, writable_file,
)
