"""Which config key names hold credentials: one rule for the run's refusal of such values
(pdr.runner.check_no_secrets), MLflow's param filter and the CLI's hint on unknown keys.

pdr reads keys only from environment variables (`engine.api_key_env` names one); a value under
such a name would be written to config.json and MLflow. `*_env` names (the variable's NAME) are
fine; `max_tokens` is not a secret (singular `token` only).
"""

from __future__ import annotations

import re

SECRET_NAME = re.compile(
    r"^(?!.*_env$)(.*api[_-]?key|.*secret.*|.*passw(or)?d|(.*[_-])?authorization|bearer|(.*[_-])?token"
    r"|credentials?)$",
    re.I,
)


def is_secret_key(name: str) -> bool:
    """Whether the last component of a config key (`api_key`, `hf_token`, ...) names a credential."""
    return SECRET_NAME.match(name.rsplit(".", 1)[-1]) is not None
