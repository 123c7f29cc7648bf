"""Credentials never come from the config: which key names hold them (one rule for the run's
refusal of such values, MLflow's param filter and the CLI's hint on unknown keys), and the check
that refuses a config holding one.

pdr reads keys only from environment variables (`engine.api_key_env` names one); a value under
such a name would be written to config.json and MLflow. `*_env` names (the variable's NAME) are
fine; `max_tokens` is not a secret (singular `token` only).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

from pdr.errors import ConfigError

SECRET_NAME = re.compile(
    r"^(?!.*_env$)(.*api[_-]?key|.*secret.*|.*passw(or)?d|(.*[_-])?authorization|bearer|(.*[_-])?token"
    r"|credentials?)$",
    re.I,
)


def is_secret_key(name: str) -> bool:
    """Whether the last component of a config key (`api_key`, `hf_token`, ...) names a credential."""
    return SECRET_NAME.match(name.rsplit(".", 1)[-1]) is not None


def check_no_secrets(cfg: object) -> None:
    """ConfigError if any key of the config object `cfg` that names a credential (api_key,
    *_secret, password, token ...) holds a value, including keys added with `+` that the schema
    does not know. The message names the key, never the value. Call it before anything is written
    or logged."""
    for key, value in walk_config(cfg):
        if is_secret_key(key) and value not in (None, "", {}, []):
            raise ConfigError(
                f"{key}: looks like a credential, and pdr never takes credentials from the config (it is recorded in "
                "config.json, MLflow and Hydra's output). Remove it; export the key in an environment variable and "
                "name that variable instead, e.g. engine.api_key_env=MY_KEY_VAR"
            )


def walk_config(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) for every leaf of a config object: dataclass fields, attributes
    added beyond the schema (Hydra's `+key=value` on a structured node), and dict entries."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        known = [f.name for f in dataclasses.fields(node)]
        extras = [k for k in getattr(node, "__dict__", {}) if k not in known and not k.startswith("_")]
        for name in (*known, *extras):
            yield from walk_config(getattr(node, name), f"{prefix}{name}.")
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_config(v, f"{prefix}{k}.")
    elif prefix:
        yield prefix[:-1], node
