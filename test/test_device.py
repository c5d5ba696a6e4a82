"""The `device` of the nodes and the commands (issue 11, point 6), on real parts, no mocks:

- policy_xai.device.parse_device: good and bad strings, an unavailable CUDA / MPS as one line;
- explain / explain_sequence / the faithfulness metrics on a policy placed with device="cpu" give
  exactly the numbers of one that never was;
- "no tensor made on the CPU by default": a TorchFunctionMode records every factory call (zeros,
  ones, arange, tensor, ...) that the explain paths make without a device= argument, while they
  explain inputs that live on a device (works on CPU-only torch: it checks the calls, not where
  the tensors end up);
- the nodes: `device` declared (typed, checked) on every node that runs a network; a policy_node
  started with device:=cpu runs (and refuses a run-time change), an attribution_node started with
  an unavailable device stops with one line while the policy node keeps going (DDS domains 211-219);
- the commands: --device cuda on this machine is exit code 2 and one line.
"""
import os
import subprocess
import sys
import time
import traceback

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from policy_xai.attribution import METHODS, explain
from policy_xai.device import DeviceError, check_device_text, model_device, parse_device, to_numpy
from policy_xai.policy import init_policy, load_policy, place_policy
from policy_xai.resources import share_path
from policy_xai.ros.interfaces import NODES, validate_parameter
from policy_xai.synthetic import synthetic_observations

torch.set_num_threads(1)
REACH = str(share_path("models", "reach.safetensors"))
NO_CUDA = not torch.cuda.is_available()


# ---- the parser -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,want", [("cpu", "cpu"), (" cpu ", "cpu"), ("", "cpu"), (None, "cpu"),
                                       (torch.device("cpu"), "cpu")])
def test_good_device_strings(text, want):
    assert parse_device(text) == torch.device(want)
    assert check_device_text(text) == want


@pytest.mark.parametrize("text", ["gpu", "CPU", "cuda:x", "cuda:-1", "cuda0", "tpu", "cpu cuda", "mps:0", "0"])
def test_bad_device_strings_are_one_line(text):
    with pytest.raises(DeviceError) as e:
        parse_device(text)
    msg = str(e.value)
    assert "\n" not in msg and repr(text.strip()) in msg and "expected cpu, cuda, cuda:N or mps" in msg, msg
    assert isinstance(e.value, ValueError)


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_unavailable_cuda_is_one_line(text):
    with pytest.raises(DeviceError) as e:
        parse_device(text)
    msg = str(e.value)
    assert msg.startswith(f"device '{text}' is not available here (torch.cuda.is_available() is False"), msg
    assert "\n" not in msg


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_unavailable_mps_is_one_line():
    with pytest.raises(DeviceError, match=r"^device 'mps' is not available here \(torch.backends.mps"):
        parse_device("mps")


def test_model_device_and_to_numpy():
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no tensors: the CPU
    np.testing.assert_array_equal(to_numpy(torch.ones(2, requires_grad=True)), np.ones(2))


# ---- the node parameter -----------------------------------------------------------------------------
NETWORK_NODES = ("policy_node", "attribution_node", "user_policy_node", "user_explainer_node")


def test_every_node_that_runs_a_network_declares_device():
    for n in NETWORK_NODES:
        p = NODES[n].params["device"]
        assert p.default == "cpu" and p.type == "str" and not p.runtime, n
        assert validate_parameter(n, "device", " cpu") == "cpu"
    for n in set(NODES) - set(NETWORK_NODES):  # the sim, the visualisation, the recorder run no network
        assert "device" not in NODES[n].params, n
    with pytest.raises(ValueError, match=r"^parameter 'device' = 'gpu': device 'gpu' is not a device name"):
        validate_parameter("policy_node", "device", "gpu")
    with pytest.raises(ValueError, match="expected a string"):
        validate_parameter("attribution_node", "device", 0)
    if NO_CUDA:
        with pytest.raises(ValueError, match=r"^parameter 'device' = 'cuda': device 'cuda' is not available here"):
            validate_parameter("user_policy_node", "device", "cuda")


# ---- the same numbers on device="cpu" ------------------------------------------------------------
def _fields(e):
    out = {k: getattr(e, k) for k in ("image", "config", "points", "torques", "alpha", "feature_points")}
    out.update({f"ratio/{k}": v for k, v in (e.ratios or {}).items()})
    return out


@pytest.fixture(scope="module")
def reach():
    pol = load_policy(REACH)
    imgs, cfgs = synthetic_observations(pol.spec, 3, seed=1)
    return pol, imgs, cfgs


@pytest.mark.parametrize("method", ["dtd", "rap", "gradient", "gbp", "gradcam", "ig", "ig_occlusion",
                                    "occlusion_net", "occlusion_net_refined"])
def test_device_cpu_gives_the_same_numbers(reach, method):
    pol, imgs, cfgs = reach
    alpha = np.linspace(0.5, 1.5, pol.spec.n_joints)
    ref = explain(pol, pol.prepare_image(imgs), pol.prepare_config(cfgs), method, alpha=alpha)
    placed = load_policy(REACH, device="cpu")
    assert placed.device == torch.device("cpu")
    got = explain(placed, placed.prepare_image(imgs), placed.prepare_config(cfgs), method,
                  alpha=torch.as_tensor(alpha, device="cpu"))
    for k, v in _fields(ref).items():
        torch.testing.assert_close(_fields(got)[k], v, rtol=0, atol=0, msg=f"{method} {k}")


def test_place_policy_keeps_the_explainer_and_checks_the_device():
    from policy_xai.attribution import amortised

    pol = load_policy(REACH)
    ex = amortised.explainer_of(pol)
    assert place_policy(pol, "cpu") is pol and amortised.explainer_of(pol) is ex
    with pytest.raises(DeviceError, match="not a device name"):
        place_policy(pol, "gpu")
    if NO_CUDA:
        with pytest.raises(DeviceError, match="is not available here"):
            load_policy(REACH, device="cuda")
    a, b = init_policy("small", seed=3), init_policy("small", seed=3, device="cpu")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_sequence_and_metrics_same_numbers_on_cpu(reach):
    from policy_xai.analysis import explain_sequence
    from policy_xai.faithfulness import metrics as M

    pol, imgs, cfgs = reach
    placed = load_policy(REACH, device="cpu")
    r0 = explain_sequence(pol, imgs, cfgs, ["dtd", "ig"], batch=2)
    r1 = explain_sequence(placed, imgs, cfgs, ["dtd", "ig"], batch=2)
    np.testing.assert_array_equal(r0.torques, r1.torques)
    for m in ("dtd", "ig"):
        np.testing.assert_array_equal(r0.methods[m].image, r1.methods[m].image)
        np.testing.assert_array_equal(r0.methods[m].ratios, r1.methods[m].ratios)
    img, cfg = pol.prepare_image(imgs[:1])[0], pol.prepare_config(cfgs[:1])[0]
    a = torch.ones(pol.spec.n_joints)
    rel = np.random.default_rng(0).random(img.shape[1:])
    c0 = M.curves(pol, img, cfg, a, rel, "road", (0.05, 0.2))
    c1 = M.curves(placed, img.to("cpu"), cfg.to("cpu"), a.to("cpu"), rel, "road", (0.05, 0.2))
    np.testing.assert_array_equal(c0.deletion, c1.deletion)
    assert M.group_effects(pol, img, cfg, a) == M.group_effects(placed, img, cfg, a)


# ---- no tensor made on the CPU by default ---------------------------------------------------------
FACTORIES = {torch.zeros, torch.ones, torch.full, torch.empty, torch.arange, torch.linspace, torch.logspace,
             torch.eye, torch.tensor, torch.as_tensor, torch.rand, torch.randn, torch.randint, torch.randperm,
             torch.scalar_tensor, torch.empty_strided}
SRC = os.sep + "policy_xai" + os.sep


class FactoryCalls(TorchFunctionMode):
    """Records (function, policy_xai file:line) of every factory call made directly by policy_xai code
    without a device= argument (a *_like call or a tensor method follows its tensor; these do not)."""

    def __init__(self):
        super().__init__()
        self.calls = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            caller = traceback.extract_stack(limit=2)[0]
            if SRC in caller.filename:
                where = caller.filename.split(SRC, 1)[1]
                self.calls.add((func.__name__, f"{where}:{caller.lineno}"))
        return func(*args, **kwargs)


def _explain_everything(pol, imgs, cfgs, methods):
    from policy_xai.attribution import amortised, path
    from policy_xai.faithfulness import metrics as M

    dev = pol.device
    img, cfg = pol.prepare_image(imgs), pol.prepare_config(cfgs)
    assert img.device == dev and cfg.device == dev
    alpha = np.ones(pol.spec.n_joints)
    with FactoryCalls() as rec:
        for m in methods:
            explain(pol, img, cfg, m, alpha=alpha)
        explain(pol, img, cfg, "dtd", alpha=alpha, per_joint=True)
        explain(pol, img, cfg, "ig", alpha=alpha, per_joint=True)
        a = torch.ones(img.shape[0], pol.spec.n_joints, device=dev)
        amortised.teacher_map(pol, img[:1], cfg[:1], a[:1], sizes=(8 / 64,), stride=16)
        amortised.explain_amortised_refined(amortised.explainer_of(pol), pol, img, cfg, alpha)
        path.completeness_gap(path.integrated_gradients(pol, img, cfg, a), a)
        rel = np.random.default_rng(0).random(img.shape[2:])
        for op in M.REMOVALS:
            M.curves(pol, img[0], cfg[0], a[0], rel, op, (0.05, 0.2))
        M.group_effects(pol, img[0], cfg[0], a[0])
        M.object_effects(pol, img[0], cfg[0], a[0], {"thing": rel > 0.5})
        M.topk_effects(pol, img[0], cfg[0], a[0], {"m": rel}, 10)
    return rec.calls


def test_no_factory_call_without_a_device_in_the_explain_paths():
    """The VisuomotorPolicy engine, the path and amortised methods and the faithfulness metrics: every
    tensor they make names its device (the inputs' / the model's)."""
    pol = load_policy(REACH, device="cpu")  # fresh: no cached weights
    imgs, cfgs = synthetic_observations(pol.spec, 2, seed=2)
    calls = _explain_everything(pol, imgs, cfgs, METHODS)
    assert not calls, "factory calls without device= (made on the CPU whatever the model's device): " + \
        ", ".join(f"{f} at {w}" for f, w in sorted(calls, key=lambda c: c[1]))


def test_no_factory_call_without_a_device_in_the_graph_engine():
    from policy_xai.attribution.graph.models import example_observation, robomimic_bc

    torch.manual_seed(0)
    model = robomimic_bc(width=8, image_size=64).eval().to("cpu")
    obs = {k: v.to("cpu") for k, v in example_observation(model, image_size=64).items()}
    pol = load_policy(str(share_path("models", "reach_resnet.safetensors")), device="cpu")
    imgs, cfgs = synthetic_observations(pol.spec, 2, seed=2)
    with FactoryCalls() as rec:
        from policy_xai.attribution.graph import METHODS as GRAPH_METHODS

        for m in GRAPH_METHODS:
            explain(model, obs, method=m, alpha=np.ones(7))
        for m in ("dtd", "gradient", "gradcam", "ig"):
            explain(pol, pol.prepare_image(imgs), pol.prepare_config(cfgs), m)
    assert not rec.calls, ", ".join(f"{f} at {w}" for f, w in sorted(rec.calls, key=lambda c: c[1]))


def test_the_guard_sees_a_cpu_default():
    """The recorder catches what it is meant to: a factory call without device= in policy_xai code."""
    from policy_xai.attribution import path

    with FactoryCalls() as rec:
        path.gaussian_kernel(1.0)  # device=None: the CPU default
        path.gaussian_kernel(1.0, device=torch.device("cpu"))
    assert rec.calls == {("arange", f"attribution{os.sep}path.py:{_line(path.gaussian_kernel, 'torch.arange')}")}


def _line(fn, text):
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, ln in enumerate(lines) if text in ln)


# ---- the commands -------------------------------------------------------------------------------
@pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")
@pytest.mark.parametrize("argv", [["explain"], ["analyze", "BAG"], ["faithfulness", "--out", "OUT"], ["sanity"],
                                  ["evaluate"], ["analyze-rollout"], ["run"], ["latency"], ["demo"],
                                  ["explain-model", "--model", "a:b", "--mapping", "M", "--observations", "O",
                                   "--out", "OUT"]])
def test_command_with_unavailable_device_is_exit_2_and_one_line(argv, tmp_path, capsys):
    from policy_xai.cli import main

    argv = [str(tmp_path / a) if a in ("BAG", "OUT", "M", "O") else a for a in argv]
    if argv[0] in ("explain", "sanity", "analyze-rollout", "run", "demo"):
        argv += ["--out", str(tmp_path / "out")]
    rc = main(argv + ["--device", "cuda"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and "device 'cuda' is not available here" in err, err
    assert not (tmp_path / "out").exists()  # checked before any work


def test_explain_command_on_cpu(tmp_path, capsys):
    import json

    from policy_xai.cli import main

    out = tmp_path / "out"
    rc = main(["explain", "--policy", REACH, "--steps", "3", "--methods", "dtd", "--panels", "1", "--device", "cpu",
               "--out", str(out)])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["device"] == "cpu"
    assert main(["explain", "--steps", "2", "--methods", "dtd", "--device", "gpu", "--out", str(tmp_path / "x")]) == 2
    assert "not a device name" in capsys.readouterr().err


# ---- the nodes, live over DDS ---------------------------------------------------------------------
def test_nodes_with_a_device(tmp_path):
    """policy_node with device:=cpu acts (and reports its device); `ros2 param set device` is refused
    and it keeps acting; an attribution_node with an unavailable device stops with one fatal line and
    exit code 1 while the policy node runs on."""
    from policy_xai.ros.graph import graph
    from policy_xai.ros.runner import ros_env

    from ros_harness import Feeder, Probe

    dom = 211 + os.getpid() % 9
    bad = "cuda" if NO_CUDA else "cuda:99"

    def start(name, extra):
        n = [x for x in graph("sim", params_file="", overrides={"policy_node": {"allow_untrained": True}})
             if x.name == name][0]
        log = open(tmp_path / f"{name}.log", "wb")
        cmd = [sys.executable, "-m", "policy_xai.ros.entry", name, *n.ros_args(), *extra]
        return subprocess.Popen(cmd, env=ros_env(dom), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    probe = Probe(dom)
    probe.listen("commands", "diagnostics")
    pol = start("policy_node", ["-p", "device:=cpu", "-p", "spec:=small"])
    att = start("attribution_node", ["-p", f"device:={bad}", "-p", "spec:=small"])
    user = subprocess.Popen([sys.executable, "-m", "policy_xai.ros.entry", "user_policy_node", "--ros-args", "-p",
                             f"device:={bad}", "-p", "model:=policy_xai.attribution.graph.models:robomimic_bc", "-p",
                             "mapping:=user_policy_sim", "-p", "allow_untrained:=true"], env=ros_env(dom),
                            stdout=open(tmp_path / "user_policy_node.log", "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    feeder = None
    try:
        assert att.wait(90) == 1
        text = (tmp_path / "attribution_node.log").read_text(errors="replace")
        fatal = [ln for ln in text.splitlines() if "fatal" in ln]
        assert len(fatal) == 1 and "parameter 'device'" in fatal[0] and "is not available here" in fatal[0], text
        assert "Traceback" not in text
        assert user.wait(90) == 1
        text = (tmp_path / "user_policy_node.log").read_text(errors="replace")
        fatal = [ln for ln in text.splitlines() if "fatal" in ln]
        assert len(fatal) == 1 and f"device '{bad}' is not available here" in fatal[0], text
        end = time.monotonic() + 90
        while probe.diagnostics("policy_node") is None and time.monotonic() < end:
            assert pol.poll() is None, (tmp_path / "policy_node.log").read_text()
            time.sleep(0.2)
        level, message, values = probe.diagnostics("policy_node")
        assert values.get("device") == "cpu", values
        from policy_xai.spec import load_spec

        feeder = Feeder(probe, list(load_spec("small").joint_names)).start()
        probe.wait_for("commands", 5, timeout=30, pred=lambda m: np.any(np.asarray(m.data) != 0))
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = probe.node.create_client(SetParameters, "/policy_node/set_parameters")
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(SetParameters.Request(parameters=[Parameter("device", value=bad).to_parameter_msg()]))
        end = time.time() + 10
        while not fut.done() and time.time() < end:
            time.sleep(0.02)
        r = fut.result().results[0]
        assert not r.successful and ("read-only" in r.reason.lower() or "fixed" in r.reason), r.reason
        n = len(probe.get("commands"))
        probe.wait_for("commands", n + 5, timeout=10)  # still acting
        assert pol.poll() is None
    finally:
        if feeder is not None:
            feeder.stop()
        for p in (pol, att, user):
            if p.poll() is None:
                p.send_signal(2)
        for p in (pol, att, user):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        probe.close()
    assert pol.returncode == 0, (tmp_path / "policy_node.log").read_text()
