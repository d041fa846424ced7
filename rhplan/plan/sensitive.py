"""What a plan keeps of sensitive values: keyed digests in place of the values, the
saved plan's variables (a secret one as its digest only), and the plain digests of an
older state upgraded to keyed ones where the value is unchanged."""
from __future__ import annotations

from typing import Any

from rhplan.config.model import Config, ResourceConfig
from rhplan.provider import RunContext
from rhplan.resources import secret as secret_type
from rhplan.state import digest
from rhplan.state.model import ResourceState, State

# how a saved plan marks a variable it keeps only as a (keyed) digest
SENSITIVE_VARIABLE = "$sensitive_sha256"


def _strings(value: Any) -> list[str]:
    """Every string (and number, as text) inside a value."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


def sensitive_digest(value: Any, ctx: RunContext) -> str:
    """What the state and saved plans keep of a sensitive value: a keyed digest."""
    return digest.digest(ctx, value)


def saved_variables(cfg: Config, ctx: RunContext, variables: dict[str, Any]) -> dict[str, Any]:
    """The variables as a saved plan keeps them: a variable declared sensitive, or one
    whose text ends up inside a sensitive attribute (a secret's values, a password),
    is kept as its digest only, so the plan file never holds the secret; `apply FILE`
    takes the value again from -var / RHPLAN_VAR_ and checks it against the digest."""
    hidden = [leaf for values in ctx.sensitive.values() for v in values.values()
              for leaf in _strings(v)]
    saved: dict[str, Any] = {}
    for name, value in variables.items():
        declared = cfg.variables.get(name)
        secret = (declared is not None and declared.sensitive) or any(
            len(s) >= 4 and any(s in h for h in hidden) for s in _strings(value))
        saved[name] = ({SENSITIVE_VARIABLE: sensitive_digest(value, ctx)} if secret
                       else value)
    return saved


def upgrade_digests(rc: ResourceConfig, attrs: dict[str, Any], prior: ResourceState,
                    state: State, ctx: RunContext, plain_digests: dict[str, str]) -> None:
    """A state written before keyed digests holds plain sha256 digests of sensitive
    values. Where a plain digest still matches the value planned now, the recorded one
    becomes the keyed digest, in place: the value is the same, so nothing is planned
    (no servlet restarts), and the next write of the state drops the guessable digest."""
    recorded = prior.attributes
    for path, value in ctx.sensitive.get(rc.address, {}).items():
        block, _, name = path.rpartition(".")
        have = recorded.get(block) if block else recorded
        want = attrs.get(block) if block else attrs
        if (isinstance(have, dict) and isinstance(want, dict)
                and have.get(name) == digest.LEGACY_PREFIX + digest.legacy_hex(value)):
            have[name] = want.get(name)
    if rc.type == "secret" and rc.address in ctx.secret_values:
        plain = secret_type.upgrade_recorded(recorded, attrs,
                                             ctx.secret_values[rc.address])
        if plain is not None:
            plain_digests[rc.address] = plain
    elif rc.type == "env" and plain_digests:
        # the env recorded a digest of its secrets' (then plain) digests
        names = recorded.get("secrets") or []
        now = [state.resources[s].attributes.get("sha256", "")
               if s in state.resources else "" for s in names]
        before = [plain_digests.get(s, d) for s, d in zip(names, now, strict=True)]
        if recorded.get("secrets_sha256") == secret_type.combined(before):
            recorded["secrets_sha256"] = secret_type.combined(now)
