"""A configuration folder's recorded state, for the commands that read or edit it
without planning: `state list|show|rm|mv|pull|push`, `output`, `status`, `run`,
`force-unlock`, `show PLANFILE`. They need no variable values and no provider
settings, so the configuration is loaded only when first used (bad arguments are
reported before a missing folder), from the folder as the user wrote it."""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from rhplan.errors import RhplanError
from rhplan.names import address_order, block_address, is_module_address, normalize_address

if TYPE_CHECKING:
    from rhplan.config.model import Config
    from rhplan.plan.model import Plan
    from rhplan.state.backend import Backend
    from rhplan.state.lockinfo import LockInfo
    from rhplan.state.model import State


class StateWorkspace:
    def __init__(self, directory: Path | str):
        self.chdir = directory  # as given (-chdir): messages name it so
        self.dir = Path(directory).absolute()

    @cached_property
    def cfg(self) -> Config:
        from rhplan.config.load import load_config
        return load_config(self.chdir)

    @cached_property
    def name(self) -> str:
        """The selected workspace."""
        from rhplan.state import workspaces
        return workspaces.current(self.cfg.dir)

    @cached_property
    def backend(self) -> Backend:
        """The one route to the state: the backend the configuration names, holding the
        selected workspace's state."""
        from rhplan.workspace.backends import backend_for
        return backend_for(self.cfg, self.name)

    def read(self) -> State:
        return self.backend.read()

    def graph(self) -> Any:
        """The configuration's dependency graph (`rhplan graph`)."""
        from rhplan.graph import build_graph
        return build_graph(self.cfg)

    # ---- files the user names ------------------------------------------------
    def user_file(self, name: str) -> Path:
        """A file to read (a saved plan, a state file): as given, else under -chdir."""
        path = Path(name)
        return path if path.is_absolute() or path.exists() else Path(self.chdir) / name

    def out_file(self, name: str) -> Path:
        """A file to write (plan -out): a relative name is under -chdir."""
        path = Path(name)
        return path if path.is_absolute() else Path(self.chdir) / name

    def saved_plan(self, name: str) -> Plan:
        """The plan file NAME (made by plan -out), read and checked as a file."""
        from rhplan.plan.model import load_plan
        return load_plan(self.user_file(name), name)

    # ---- state commands -----------------------------------------------------
    def addresses(self, wanted: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The recorded addresses in order, only those WANTED names (a block address
        names each of its instances, a module address all that is inside it)."""
        recorded = self.read().resources
        want = [normalize_address(a) for a in wanted]
        return [addr for addr in sorted(recorded, key=address_order)
                if not want or addr in want or block_address(addr) in want or any(
                    addr.startswith(w + ".") for w in want if is_module_address(w))]

    def remove(self, addresses: tuple[str, ...] | list[str], dry_run: bool,
               each: Callable[[str], None]) -> int:
        """Forget ADDRESSES (every instance of a block) under the lock; `each` hears
        every address before the state is written. Returns how many."""
        with self.backend.locked("state rm"):
            st = self.backend.read()
            gone: list[str] = []
            for a in addresses:
                found = instances(st, a)
                if not found:
                    raise RhplanError(f"no {a} in the state; see rhplan state list")
                gone += [f for f in found if f not in gone]
            for a in gone:
                each(a)
                if not dry_run:
                    del st.resources[a]
            if not dry_run:
                self.backend.write(st)
        return len(gone)

    def move(self, source: str, destination: str, dry_run: bool,
             each: Callable[[str, str], None]) -> int:
        """Move SOURCE (one instance, or every instance of a block) to DESTINATION in
        the state, under the lock; what refers to it follows. Returns how many moved."""
        from rhplan.names import instance_address, parse_address
        from rhplan.plan.moved import moved_state

        src, dst = normalize_address(source), normalize_address(destination)
        ps, pd = parse_address(src), parse_address(dst)
        for given, parts in ((source, ps), (destination, pd)):
            if parts is None:
                raise RhplanError(f"{given!r} is not a resource address; write TYPE.NAME, "
                                  "TYPE.NAME[0] or 'TYPE.NAME[\"key\"]'")
        assert ps is not None and pd is not None
        if ps[0].rpartition(".")[2] != pd[0].rpartition(".")[2]:  # into / out of a module
            raise RhplanError(f"cannot move a {ps[0]} to a {pd[0]} address; keep the type")
        with self.backend.locked("state mv"):
            st = self.backend.read()
            found = instances(st, src)
            if not found:
                raise RhplanError(f"no {src} in the state; see rhplan state list")
            if found == [src]:
                moves = {src: dst}
            elif pd[2] is not None:
                raise RhplanError(f"{src} has {len(found)} instances; move them to a block "
                                  f"address (e.g. {pd[0]}.{pd[1]}), or move one instance")
            else:
                moves = {a: instance_address(pd[0], pd[1], parse_address(a)[2])  # type: ignore[index]
                         for a in found}
            taken = [d for d in moves.values() if d in st.resources and d not in moves]
            if taken:
                raise RhplanError(f"{taken[0]} is already in the state; remove or move it first")
            for old, new in moves.items():
                each(old, new)
            if not dry_run:
                self.backend.write(moved_state(st, moves, in_place=True))
        return len(moves)

    def pull(self) -> dict[str, Any]:
        """The state as its JSON document."""
        return self.read().to_json()

    def push(self, file: str, force: bool, stdin: IO[bytes] | None = None) -> State:
        """Replace the state with FILE (from state pull; "-": stdin) under the lock.
        Refused, unless force, when it is another configuration's state (lineage) or
        older (serial). Written as serial max+1. Returns what was written."""
        from rhplan.state.model import parse_state
        try:
            raw = (stdin or sys.stdin.buffer).read() if file == "-" \
                else self.user_file(file).read_bytes()
        except OSError as exc:
            raise RhplanError(f"cannot read {file}: {exc.strerror}; "
                              "give a state file made by rhplan state pull") from None
        source = "stdin" if file == "-" else file
        # the file's own problems (not UTF-8, not JSON, 100,000 brackets deep, wrong shape)
        # are one line naming it; it has no backup to restore
        new = parse_state(raw, source, backup=None, copy_values=True,
                          todo="give a state file made by rhplan state pull")
        with self.backend.locked("state push"):
            current = self.backend.read()
            exists = bool(current.serial or current.resources)
            if exists and not force:
                if new.lineage != current.lineage:
                    raise RhplanError(
                        f"{source} has lineage {new.lineage}, but the current state has "
                        f"{current.lineage}: it is another configuration's state; check the "
                        "file, or add -force to replace the state anyway")
                if new.serial < current.serial:
                    raise RhplanError(
                        f"{source} has serial {new.serial}, lower than the current state's "
                        f"{current.serial}: it is older; pull the state again, or add -force "
                        "to replace the state anyway")
            # written as serial max+1, so anyone holding the replaced state sees it changed
            new.serial = max(new.serial, current.serial)
            self.backend.write(new)
        return new

    # ---- workspaces: several states for one configuration -----------------------
    def current_workspace(self) -> str:
        """`workspace show`: the selected workspace, without loading the configuration."""
        from rhplan.state import workspaces
        return workspaces.current(Path(self.chdir))  # errors name the folder as given

    def new_workspace(self, name: str) -> None:
        """`workspace new NAME`: an empty state, selected; refused while RHPLAN_WORKSPACE /
        TF_WORKSPACE chooses another (CI may make the one it names)."""
        from rhplan.workspace.backends import new_workspace, not_overridden
        not_overridden(f"switching to {name!r}", unless=name)
        new_workspace(self.cfg, name)

    def select_workspace(self, name: str, or_create: bool) -> bool:
        """`workspace select NAME [-or-create]`; whether it was made."""
        from rhplan.workspace.backends import select_workspace
        return select_workspace(lambda: self.cfg, name, or_create)

    def workspaces(self) -> tuple[list[str], str]:
        """`workspace list`: every workspace and the one in use."""
        from rhplan.workspace.backends import listed_workspaces
        return listed_workspaces(self.cfg)

    def delete_workspace(self, name: str, force: bool) -> int:
        """`workspace delete NAME`; how many resources it forgot."""
        from rhplan.workspace.backends import delete_workspace
        return delete_workspace(self.cfg, name, force)

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove a lock left by an operation that is gone; returns whose it was."""
        return self.backend.force_unlock(lock_id)

    # ---- outputs, status, run -------------------------------------------------
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self.read().outputs

    def output(self, name: str) -> Any:
        """The recorded value of output NAME."""
        outputs = self.outputs()
        if name not in outputs:
            raise RhplanError(f"no output {name!r} in the state; outputs: "
                              f"{', '.join(sorted(outputs)) or 'none (run rhplan apply)'}")
        return outputs[name]["value"]

    def status(self) -> Status:
        """Each recorded cluster's live report (its nodes, Ray, each env's servlet) with
        its default env's address: what run -cluster uses; None if ambiguous."""
        from rhplan.env_lookup import default_env
        from rhplan.status import cluster_status
        st = self.read()
        report = cluster_status(st, str(self.chdir))
        for c in report:
            try:
                c["default_env"] = default_env(st, c["address"], self.chdir)
            except RhplanError:
                c["default_env"] = None
        return Status(report, st)

    def run(self, env: str | None, cluster: str | None, argv: list[str]) -> int:
        """Run ARGV in ENV (else CLUSTER's default env), streaming its output; returns
        its exit code."""
        from rhplan.env_lookup import default_env
        from rhplan.status import stream_in_env
        state = self.read()
        if env is None:
            env = default_env(state, cluster, self.chdir)
        # output streams as the command writes it, over the provider's connection alone
        return stream_in_env(state, str(self.chdir), env, argv)


def one_instance(st: State, address: str) -> str:
    """The one recorded instance ADDRESS names (state show), else an error saying why."""
    found = instances(st, address)
    if not found:
        raise RhplanError(f"no {address} in the state; see rhplan state list")
    if len(found) > 1 or found[0] != normalize_address(address):
        raise RhplanError(f"{address} has {len(found)} instances ({', '.join(found)}); "
                          f"show one of them, e.g. rhplan state show '{found[0]}'")
    return found[0]


def instances(st: State, address: str) -> list[str]:
    """The recorded instances an address names: itself, or every instance of a block
    (env.x -> env.x["a"], env.x["b"]), as Terraform's state commands read it."""
    address = normalize_address(address)
    if address in st.resources:
        return [address]
    if is_module_address(address):  # all that is inside it
        return sorted((a for a in st.resources if a.startswith(address + ".")), key=address_order)
    return sorted((a for a in st.resources if block_address(a) == address), key=address_order)


@dataclass
class Status:
    clusters: list[dict[str, Any]]  # one report per cluster (rhplan.status.cluster_status)
    state: State

    def default_env_names(self) -> dict[str, str | None]:
        """Each cluster's default env's name (its servlets are printed under its node)."""
        return {c["address"]: c["default_env"] and self.state.resources[
            c["default_env"]].attributes.get("name") for c in self.clusters}

    def unhealthy(self) -> bool:
        """A servlet not known alive, or a node whose Ray is not running: status exits 1."""
        report = self.clusters
        return any(not s["alive"] for c in report for s in c["servlets"]) or any(
            n["ray"] != "running" for c in report for n in c["nodes"]) or any(
            c["ray"]["status"] != "running" for c in report)
