"""package "NAME" { git_url, revision, install_method }: a git package envs install.

It lives only in the state; envs that list it install its spec."""
from __future__ import annotations

from typing import Any

from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError
from rhplan.packages import git_problem
from rhplan.provider import RunContext
from rhplan.resources.base import ResourceType

METHODS = ("pip",)


class PackageType(ResourceType):
    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        method = attrs.get("install_method")
        if method not in METHODS and method is not UNKNOWN:  # (validate: a variable)
            line = rc.block.attrs["install_method"].line
            raise ConfigError(f"install_method {method!r} is not supported; use \"pip\"",
                              rc.file, line)
        url = attrs["git_url"]
        if isinstance(url, str) and not (url.startswith(("https://", "http://", "ssh://",
                                                         "git@", "file://"))):
            raise ConfigError(f"git_url {url!r} is not a git URL; write https://host/repo.git",
                              rc.file, rc.block.attrs["git_url"].line)
        rev = attrs.get("revision")
        if isinstance(url, str) and (rev is None or isinstance(rev, str)):
            # git gets both as arguments: "--upload-pack=..." must never be an option
            problem = git_problem(url, rev)
            if problem:
                attr = "git_url" if rev is None or git_problem(url, None) else "revision"
                raise ConfigError(f"{rc.address}: {problem}", rc.file,
                                  rc.block.attrs[attr].line)
        attrs["spec"] = UNKNOWN if UNKNOWN in (url, rev) else (
            f"git+{url}@{rev}" if rev else f"git+{url}")
        return attrs
