import os
import sys
from pathlib import Path

# The checkout's own sources first, in this process and in every node / command process a test starts
# (a git worktree or a second clone next to an editable install of another one would otherwise test
# the installed copy).
_SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, _SRC)
os.environ["PYTHONPATH"] = os.pathsep.join([_SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                      if p and p != _SRC])

# Headless defaults for every test process (real DDS over UDP on localhost, EGL rendering).
os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
