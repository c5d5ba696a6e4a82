"""ament_python / pip build of policy_xai (sources live in src/)."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = "policy_xai"


def _share(folder):
    files = [f for f in glob(os.path.join(folder, "**", "*"), recursive=True)
             if os.path.isfile(f) and "__pycache__" not in f and not f.endswith(".pyc")]
    out = {}
    for f in files:
        out.setdefault(os.path.join("share", PACKAGE, os.path.dirname(f)), []).append(f)
    return list(out.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
    ]
    + _share("launch")
    + _share("config")
    + _share("urdf")
    + _share("models"),
    include_package_data=True,
    install_requires=["numpy", "pyyaml", "safetensors", "torch>=2.1", "tqdm"],
    zip_safe=False,
    maintainer="policy_xai developers",
    description="Explanations of deep visuomotor robot policies, live in ROS 2 and offline.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "policy-xai = policy_xai.cli:main",
            "sim_node = policy_xai.ros.entry:sim_node",
            "policy_node = policy_xai.ros.entry:policy_node",
            "attribution_node = policy_xai.ros.entry:attribution_node",
            "visualization_node = policy_xai.ros.entry:visualization_node",
            "policy_xai_recorder = policy_xai.ros.entry:recorder",
            "user_policy_node = policy_xai.ros.entry:user_policy_node",
            "user_explainer_node = policy_xai.ros.entry:user_explainer_node",
        ],
    },
)
