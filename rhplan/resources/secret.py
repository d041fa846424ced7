"""secret "NAME" { from_env = [...] values = {...} }: values envs receive.

Values are read from the environment when planning and applying and kept in memory
only; the state and plan hold key names and a keyed digest (`sha256`: an HMAC-SHA256
under the state's digest key, see rhplan.state.digest), enough to see a change and
nothing a guess could be checked against."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from rhplan import envs
from rhplan.config.load import ResourceConfig
from rhplan.errors import ConfigError
from rhplan.provider import RunContext
from rhplan.resources.base import ResourceType
from rhplan.state import digest


def combined(digests: list[str]) -> str:
    """An env's `secrets_sha256` from its secrets' digests (the formula of
    EnvType.plan_values, repeated here to recognise what older states recorded)."""
    return hashlib.sha256(json.dumps(digests).encode()).hexdigest() if digests else ""


def upgrade_recorded(recorded: dict[str, Any], planned: dict[str, Any],
                     values: dict[str, str]) -> str | None:
    """A secret recorded by an rhplan before keyed digests holds the plain sha256 of its
    values. If that still matches the values planned now, record the keyed digest
    instead (in place) and return the plain one; None if there was nothing to upgrade."""
    old = recorded.get("sha256")
    if isinstance(old, str) and old == digest.legacy_hex(values) and \
            digest.is_keyed(planned.get("sha256")):
        recorded["sha256"] = planned["sha256"]
        return old
    return None


class SecretType(ResourceType):
    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        values: dict[str, str] = {}
        for name in attrs.get("from_env") or []:
            if name not in os.environ:
                line = rc.block.attrs["from_env"].line
                raise ConfigError(f"{rc.address} reads ${name}, which is not set; export {name} "
                                  "before running rhplan", rc.file, line)
            values[name] = os.environ[name]
        literal = ctx.sensitive.get(rc.address, {}).get("values") or {}
        values.update(literal)
        for key, value in values.items():
            # refused here with file:line, not on the host mid-apply; the message names
            # the key only, never the value
            problem = envs.env_var_problem("secret", key, value)
            if problem:
                attr = "values" if key in literal else "from_env"
                line = rc.block.attrs[attr].line if attr in rc.block.attrs else rc.line
                raise ConfigError(f"{rc.address}: {problem}", rc.file, line)
        ctx.secret_values[rc.address] = values
        attrs["keys"] = sorted(values)
        attrs["sha256"] = digest.digest(ctx, values)
        return attrs
