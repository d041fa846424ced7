"""-target and -replace: the addresses checked against the configuration and the state,
and which resource instances a targeted plan covers (Terraform's rule: a target's
dependencies too, or for -destroy what depends on it). Pure: graph and state in."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rhplan.config.model import Config
from rhplan.errors import ConfigError
from rhplan.graph import ancestors, descendants
from rhplan.names import block_address, normalize_address
from rhplan.state.model import State


def check_requested(targets: list[str], replace: list[str], cfg: Config, state: State
                    ) -> tuple[list[str], list[str]]:
    """-target and -replace, normalized; each names a resource of the configuration or
    the state (a module call: all inside it)."""
    targets = [normalize_address(a) for a in targets]
    replace = [normalize_address(a) for a in replace]
    if any(a.startswith("module.") for a in targets):  # all that is inside it
        from rhplan.config.modules import expand_targets
        targets = expand_targets(targets, cfg, state)
    for addr in targets + replace:
        if block_address(addr) not in cfg.resources and addr not in state.resources:
            raise ConfigError(f"{addr} is not a resource in the configuration or state; "
                              "check the address (see rhplan state list)")
    return targets, replace


@dataclass(frozen=True)
class Selection:
    """What a targeted plan covers: blocks planned whole, and instances named one by
    one."""

    whole: frozenset[str]
    exact: frozenset[str]

    def covers(self, addr: str) -> bool:
        return addr in self.exact or block_address(addr) in self.whole

    def covers_block(self, block: str) -> bool:
        return block in self.whole or any(block_address(e) == block for e in self.exact)


def select(graph: Any, state: State, targets: list[str], destroy: bool
           ) -> Selection | None:
    """With -target: the blocks planned whole (a target without an index, and what
    targets depend on, or for -destroy what depends on them) and the instances named
    one by one; None plans everything."""
    if not targets:
        return None
    g = graph.copy()
    for addr, rs in state.resources.items():
        for dep in rs.dependencies:
            g.add_edge(block_address(dep), block_address(addr))
    whole: set[str] = set()
    exact: set[str] = set()
    for t in targets:
        b = block_address(t)
        (whole if t == b else exact).add(t)
        if b in g:
            # planning a target needs what it depends on; destroying it, what depends on it
            whole |= descendants(g, b) if destroy else ancestors(g, b)
    return Selection(frozenset(whole), frozenset(exact))
