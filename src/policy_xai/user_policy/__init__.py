"""A user's policy without writing code: load it, map observations to it, check the two fit.

    from policy_xai.user_policy import load_user_policy, ObservationMapping
    model = load_user_policy("my_pkg.policies:make_policy", weights="policy.safetensors")
    model = load_user_policy("policy.pt2")                       # a torch.export-ed program
    mapping = ObservationMapping.from_yaml("mapping.yaml")
    mapping.check(model)                                         # UserPolicyError if they do not fit
    obs = mapping.to_inputs({"image": rgb_uint8_hxwx3, "state": np.array([...])})  # model inputs
    e = mapping.explain(model, obs, method="dtd")                # policy_xai.attribution.explain

Sources (`load_user_policy`):
- `package.module:factory` (a function or class; `a.b:Class.make` works too), called with the
  keyword arguments given as a dict, then the weights: a `.safetensors` file or a torch state_dict
  read with `torch.load(..., weights_only=True)` (a checkpoint dict with a `state_dict` entry is
  accepted). Missing / unexpected keys and shape mismatches are a UserPolicyError naming them.
- a `.pt2` file written by `torch.export.save`: loaded with `torch.export.load(...).module()`. Its
  aten ops are mapped back to the torch functions the graph engine has rules for (conv, linear, relu
  and the smooth activations, pools, cat, flatten / reshape, add, mean, ...), so a conv + linear
  program explains as its nn.Module would. torch.export decomposes modules into aten ops, so a
  spatial softmax (softmax + matmul) or an unfolded BatchNorm (`aten.batch_norm`) is no longer
  recognisable: such a program loads and runs, but explaining it raises UnsupportedOpError naming
  the aten op (use the `module:factory` form for those models). The program's train/eval mode is
  the one it was exported in (export it from `model.eval()`).

The YAML mapping (`ObservationMapping.from_yaml`): observation names -> sources; `actions` names the
outputs (the observations may also sit under an `observations:` key):

    agentview_image: {topic: /camera/image_raw, kind: image, height: 84, width: 84}
    state: {topic: /joint_states, kind: vector, fields: [position, velocity], joints: [j1, ..., j7]}
    gripper: {topic: /gripper/state, kind: vector, size: 2}
    actions: {names: [j1, ..., j7], kind: torques}        # or kind: other; alpha: [w1, ...] optional

Images arrive as ROS gives them, H x W x 3 uint8 (RGB), and become float (1, 3, H, W) in [0, 1]
(float images are taken as already in [0, 1]);
vectors are float arrays of the declared size (fields x joints: all of the first field's joints,
then the next field's), or a JointState-like dict {"name": [...], "position": [...], ...} whose
joints are picked by name. The ratio groups of a fields x joints vector are its fields.

Alpha (the output weights of the explanation): the given `alpha`, else 1 for every action, which
is the right default for actions that are not joint torques (end-effector deltas, gripper). Joint
torques can instead take the paper's dynamics-based importance factors per step,
`mapping.torque_alpha(robot_model, data)`, from the joint positions of the state vector (the
command's `--robot`).

No ROS import here: the nodes and the `policy-xai explain-model` command build on this module.

Layout: errors.py (UserPolicyError), loading.py (module:factory + weights), exported.py (.pt2
programs), sources.py (one observation's spec), mapping.py (ObservationMapping, load_mapping),
inputs.py (call style, the inputs a model reads).
"""
from .errors import UserPolicyError, _line, _short  # noqa: F401
from .exported import ExportedPolicy, _aten_table, load_exported  # noqa: F401
from .inputs import _pick_output, _positional_params, call_style, describe_inputs, model_inputs  # noqa: F401
from .loading import load_user_policy, load_weights, read_state_dict  # noqa: F401
from .mapping import ObservationMapping, load_mapping  # noqa: F401
from .sources import (ACTION_KINDS, IMAGE_KINDS, OBSERVATION_KINDS, VECTOR_KINDS, Source,  # noqa: F401
                      _from_fields, _source)
