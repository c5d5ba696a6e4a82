"""States of interest (issue 12; Rupprecht et al., ../shared/papers/003): a VAE over what the policy
observes (model.py), trained with an attentive reconstruction, an agent-perception term and KL
(train.py), and the search of its latent space for states where a target is extreme (search.py,
find.py); the teacher network of the teacher_gap target (teacher.py) and the check of found states
in the simulation (validate.py). Commands: `policy-xai states train | find | teacher | validate | bench`
(commands/states.py). No ROS here."""
from .model import (StateModelError, StateModelMismatchError, StateVAE, load_state_model,  # noqa: F401
                    save_state_model, state_model_for)
from .search import TARGETS, TargetError, find_states, make_target  # noqa: F401
