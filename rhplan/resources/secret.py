"""secret "NAME" { from_env = [...] values = {...} }: values envs receive; or
secret "NAME" { provider = "aws" profile = "..." }: credentials read on this machine and
put on the hosts as a 0600 file (rhplan.secret_providers).

Values are read from the environment when planning and applying and kept in memory
only; the state and plan hold key names and a keyed digest (`sha256`: an HMAC-SHA256
under the state's digest key, see rhplan.state.digest), enough to see a change and
nothing a guess could be checked against."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from rhplan import secret_providers
from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError
from rhplan.hosts import envs
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
        if ctx.cache.get("validating"):  # validate reads no environment or credentials
            self._check_provider(rc, attrs)
            # no digest without values: "" keeps an env's digest of its secrets computable
            attrs["keys"], attrs["sha256"] = UNKNOWN, ""
            return attrs
        values: dict[str, str] = {}
        for name in attrs.get("from_env") or []:
            if name not in os.environ:
                line = rc.block.attrs["from_env"].line
                raise ConfigError(f"{rc.address} reads ${name}, which is not set; export {name} "
                                  "before running rhplan", rc.file, line)
            values[name] = os.environ[name]
        literal = ctx.sensitive.get(rc.address, {}).get("values") or {}
        values.update(literal)
        values.update(self._from_provider(rc, attrs, ctx))
        for key, value in values.items():
            if secret_providers.is_file_key(key):
                continue  # a file's content: checked as a file, never an env var
            # refused here with file:line, not on the host mid-apply; the message names
            # the key only, never the value
            problem = envs.env_var_problem("secret", key, value)
            if problem:
                attr = "values" if key in literal else "from_env"
                line = rc.block.attrs[attr].line if attr in rc.block.attrs else rc.line
                raise ConfigError(f"{rc.address}: {problem}", rc.file, line)
        ctx.secret_values[rc.address] = values
        attrs["keys"] = secret_providers.shown_keys(values)
        attrs["sha256"] = digest.digest(ctx, values)
        return attrs

    @staticmethod
    def _from_provider(rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext
                       ) -> dict[str, str]:
        """A provider secret's values (credential files read now, so rotating them shows
        as a planned change); a missing file is one line naming it, at file:line."""
        provider = SecretType._check_provider(rc, attrs)
        if provider is None:
            return {}
        line = rc.block.attrs["provider"].line if "provider" in rc.block.attrs else rc.line
        path = attrs.get("path")
        if isinstance(path, str) and not path.startswith(("~", "/")):
            path = str(ctx.config_dir / path)  # as env_file: from the configuration's folder
        try:
            return secret_providers.read_local(provider, attrs.get("profile"), path)
        except secret_providers.MissingCredentials as exc:
            raise ConfigError(f"{rc.address}: {exc}", rc.file, line) from None

    @staticmethod
    def _check_provider(rc: ResourceConfig, attrs: dict[str, Any]) -> str | None:
        """What can be told of provider / profile / path without reading anything; the
        provider's name (None for none)."""
        provider = attrs.get("provider")
        for name in ("profile", "path"):
            if attrs.get(name) is not None and provider is None:
                line = rc.block.attrs[name].line if name in rc.block.attrs else rc.line
                raise ConfigError(f"{rc.address}: {name} needs provider (one of "
                                  f"{', '.join(secret_providers.PROVIDERS)})", rc.file, line)
        if provider is None or provider is UNKNOWN:
            return None
        line = rc.block.attrs["provider"].line if "provider" in rc.block.attrs else rc.line
        if provider not in secret_providers.PROVIDERS:
            raise ConfigError(f"{rc.address}: unknown provider {provider!r}; use one of "
                              f"{', '.join(secret_providers.PROVIDERS)}", rc.file, line)
        if attrs.get("profile") is not None and provider != "aws":
            raise ConfigError(f"{rc.address}: profile is for provider \"aws\" only; remove it",
                              rc.file, rc.block.attrs["profile"].line)
        return str(provider)
