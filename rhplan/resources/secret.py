"""secret "NAME" { from_env = [...] values = {...} }: values envs receive.

Values are read from the environment when planning and applying and kept in memory
only; the state and plan hold key names and a sha256, enough to see a change."""
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


def digest(values: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


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
        attrs["sha256"] = digest(values)
        return attrs
