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


# ---- masking credentials inside URLs (userinfo, token-like query parameters) ---------------------

MASK = "***"
# A URL: scheme://... up to whitespace or a quote/bracket.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>]+")
# Its userinfo: everything between "//" and the last "@" before the path (greedy: a password
# with a raw "@" is masked whole).
_USERINFO = re.compile(r"^(?P<scheme>[^:]+://)(?P<userinfo>[^/?#]+)@")
# Credential-looking query parameters: ?token=..., &api_key=..., &sig=...
_QUERY_SECRET = re.compile(
    r"(?P<lead>[?&;](?:[\w.\-]*?(?:api[_-]?key|key|token|secret|passw(?:or)?d|sig|signature|auth"
    r"|authorization|credentials?)))=(?P<value>[^&#;]+)",
    re.I,
)


def _mask_url(m: re.Match[str]) -> str:
    url = _USERINFO.sub(lambda u: f"{u['scheme']}{MASK}@", m.group())
    if "=" in url:
        url = _QUERY_SECRET.sub(lambda q: f"{q['lead']}={MASK}", url)
    return url


def mask_secrets(text: str) -> str:
    """`text` with every URL's userinfo (`http://user:pw@host` -> `http://***@host`) and the values
    of its credential-looking query parameters (`?token=abc` -> `?token=***`) replaced by `***`.
    Only URLs are touched (model output around them is not).

    The one function for everything pdr shows or stores (config dicts, MLflow params and tags,
    summaries, Hydra's files, log records, CLI errors); engines keep the real URL for requests.
    Cheap on text without a URL (a substring test first)."""
    if "://" not in text:
        return text
    return _URL.sub(_mask_url, text)


def mask_data(data: Any) -> Any:
    """A copy of plain data (dicts, lists, tuples, strings, scalars) with `mask_secrets` applied
    to every string, keys included."""
    if isinstance(data, str):
        return mask_secrets(data)
    if isinstance(data, dict):
        return {mask_data(k) if isinstance(k, str) else k: mask_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(mask_data(v) for v in data)
    return data


def secret_overrides(argv: list[str]) -> list[str]:
    """The keys of command-line overrides (`engine.api_key=...`, `+launch_env.HF_TOKEN=...`,
    `++x.password=...`) that set a credential-looking key to a value. Only keys are returned, so
    that a message can name them without echoing the value. For `main()`, before Hydra composes
    the config and writes `.hydra/overrides.yaml`."""
    found = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        key = key.lstrip("+~").split("@", 1)[0]  # `group@package=option` names the group
        if key.startswith("hydra."):
            continue
        if is_secret_key(key) and value.strip() not in ("", "null", "None", "''", '""'):
            found.append(key)
    return found


def install_log_masking() -> None:
    """Mask URL credentials in every log record from now on, whoever configures the handlers
    later (Hydra replaces them with `dictConfig`; a record factory survives that). Idempotent."""
    import logging

    factory = logging.getLogRecordFactory()
    if getattr(factory, "_pdr_masking", False):
        return

    def masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
            return record
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return record

    masking_factory._pdr_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masking_factory)
