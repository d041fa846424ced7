"""Crash consistency: SIGKILL a running `rhplan apply` (or destroy) at a chosen point,
then check that running the same command again repairs everything.

Nothing in rhplan knows about this harness: a kill point is an event seen from the
outside while the command runs, and the rhplan process itself gets SIGKILL (as the
OOM killer would send it); whatever it started keeps running, as in real life.

    after_write(k)          the state file's serial went k past where it started
                            (the file is renamed into place, so it always parses)
    after_api_call(k)       the k-th EC2 call of the run is in RHPLAN_AWS_API_LOG
                            (logged just before the request is sent)
    after_api_op(op, n)     the n-th call of one operation, e.g. RunInstances (or,
                            returned=True, the call after it: op has been answered)
    process_appears(...)    a process whose command line holds all the given words,
                            e.g. `uv pip install` into one env (mid package install)
                            or `ray start` with the cluster's temp dir (bootstrap)
    ssh_login(server, n)    the n-th login the test sshd accepted in this run

`run_kill_point(scenario, point)` is the whole experiment for one point and returns a
Verdict (the problems it found, empty when everything converged):
  1. start the command; poll the event every few ms; SIGKILL rhplan when it is seen;
  2. the state file and its .backup parse as JSON and as a State;
  3. the lock the killed run held names it (holder pid, "apply"); the next run is not
     blocked by it, or is refused naming that holder and then `force-unlock ID` clears
     it: those are the only ways a lock may go;
  4. the same command again succeeds; a following `plan -detailed-exitcode` says
     "no changes" (or, after destroy, nothing is left in the state);
  5. the scenario's own checks: one Ray head and one servlet per env on the cluster's
     processes, every servlet answers with the pid the state records, EC2 holds
     exactly the desired instances, security groups and key pairs by lineage tag.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import Rhplan
from drivers import run_driver
from rayprocs import alive, cluster_processes, temp_dir_for

from rhplan.state.model import State

KILL_WAIT = 240.0  # the longest a command may run before its kill point must be seen
RERUN_TIMEOUT = 600.0
POLL = 0.004  # how often the event is looked for: kill points land within a few ms


# --------------------------------------------------------------------------
# kill points: events seen from outside the running command
# --------------------------------------------------------------------------

@dataclass
class Watch:
    """What a kill point may look at while the command runs."""

    rh: Rhplan
    pid: int
    start_serial: int
    api_log: Path
    start_logins: int = 0

    sc: Scenario | None = None

    def serial(self) -> int:
        state = self.sc.state() if self.sc is not None else None
        return int(state["serial"]) if state else self.start_serial

    def api_calls(self) -> list[str]:
        try:
            return self.api_log.read_text().split()
        except OSError:
            return []


@dataclass(frozen=True)
class KillPoint:
    name: str
    seen: Callable[[Watch], bool]
    # for ssh_login: the server whose log counts logins (read at start)
    server: Any = None
    # SIGKILL: a crash. SIGSTOP: a hung holder, alive but stuck (see hung())
    sig: int = signal.SIGKILL


def hung(point: KillPoint) -> KillPoint:
    """The same event, but rhplan is frozen (SIGSTOP) instead of killed: its lock must
    then be refused to the next run, naming it, until `force-unlock ID`; the frozen
    process is SIGKILLed once the check is done."""
    return KillPoint(f"hang {point.name}", point.seen, point.server, signal.SIGSTOP)


def after_write(k: int) -> KillPoint:
    return KillPoint(f"after state write {k}", lambda w: w.serial() >= w.start_serial + k)


def after_api_call(k: int) -> KillPoint:
    def seen(w: Watch) -> bool:
        return len(w.api_calls()) >= k
    return KillPoint(f"at API call {k}", seen)


def after_api_op(op: str, n: int = 1, returned: bool = False) -> KillPoint:
    """At the n-th call of op (logged as it is sent: the kill may land before or after
    AWS acts on it), or, returned=True, at the next call after it (op is done)."""
    def seen(w: Watch) -> bool:
        calls = w.api_calls()
        at = [i for i, c in enumerate(calls) if c == op]
        return len(at) >= n and (not returned or len(calls) > at[n - 1] + 1)
    return KillPoint(f"{'after' if returned else 'at'} {op} #{n}", seen)


def processes_with(words: tuple[str, ...]) -> list[int]:
    """Live processes whose command line holds every word."""
    found = []
    needles = [w.encode() for w in words]
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if all(n in cmd for n in needles) and alive(int(entry)):
            found.append(int(entry))
    return found


def process_appears(label: str, *words: str) -> KillPoint:
    return KillPoint(f"mid {label}", lambda w: bool(processes_with(words)))


def ssh_login(server: Any, n: int) -> KillPoint:
    return KillPoint(f"at SSH login {n}",
                     lambda w: server.accepted_logins() - w.start_logins >= n, server)


# --------------------------------------------------------------------------
# scenarios: what is applied, and what "converged" means for it
# --------------------------------------------------------------------------

@dataclass
class Scenario:
    """One configuration folder and the command a kill point interrupts."""

    provider: str
    rh: Rhplan
    root: Path  # the cluster's root_dir (its Ray is told apart by it)
    cluster: str = "main"
    envs: tuple[str, ...] = ()  # envs whose servlets must answer
    command: tuple[str, ...] = ("apply", "-auto-approve")
    # what is run after the kill (default: the same command): a user may kill a
    # destroy and then apply instead
    then: tuple[str, ...] | None = None
    moto: Any = None  # MotoServer, for aws scenarios
    instances: int = 0  # desired live instances (aws)
    skip_hosts: bool = False  # aws without SSH set-up (no Ray, no envs)
    driver_env: dict[str, str] = field(default_factory=dict)
    _s3: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # other runs load this machine: a servlet may take longer than conftest's 30 s
        # to start, which is not what these tests are about
        self.rh.env["RHPLAN_SERVLET_TIMEOUT"] = "120"

    @property
    def rerun_command(self) -> tuple[str, ...]:
        return self.then or self.command

    @property
    def destroying(self) -> bool:
        """True when the run after the kill destroys (converged = nothing left)."""
        return self.rerun_command[0] == "destroy"

    def state(self, suffix: str = "") -> dict[str, Any] | None:
        """The state as stored (local file or S3 object; suffix ".backup" for its
        backup), or None if there is none (or it does not parse: see check_state_files)."""
        raw = self.state_bytes(suffix)
        try:
            return json.loads(raw) if raw is not None else None
        except ValueError:
            return None

    def state_bytes(self, suffix: str = "") -> bytes | None:
        where = s3_location(self)
        if where is None:
            path = Path(f"{self.rh.state_path}{suffix}")
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None
        bucket, key = where
        try:
            return self.s3().get_object(Bucket=bucket, Key=key + suffix)["Body"].read()
        except self.s3().exceptions.NoSuchKey:
            return None

    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = self.moto.client("s3")
        return self._s3

    def forget_state(self) -> None:
        """After a clean destroy (nothing recorded), start the next run from no state at
        all, as a first apply does (it records a new lineage first)."""
        assert not self.resources(), "forget_state() is for an empty state only"
        where = s3_location(self)
        if where is None:
            for suffix in ("", ".backup"):
                Path(f"{self.rh.state_path}{suffix}").unlink(missing_ok=True)
            return
        bucket, key = where
        for suffix in ("", ".backup"):
            self.s3().delete_object(Bucket=bucket, Key=key + suffix)

    def serial(self) -> int:
        state = self.state()
        return int(state["serial"]) if state else 0

    def resources(self) -> dict[str, dict[str, Any]]:
        state = self.state()
        return {r["address"]: r for r in (state or {}).get("resources", [])}

    def lineage(self) -> str:
        return str((self.state() or {}).get("lineage") or "")

    def temp_dirs(self) -> list[str]:
        """The head's temp dir and every worker's this cluster has or had: recorded
        hosts, and (aws) every instance of the lineage, recorded or not."""
        c = self.resources().get(f"cluster.{self.cluster}")
        ips = set((c or {}).get("attributes", {}).get("ips") or [])
        if self.moto is not None and not self.skip_hosts and self.lineage():
            ips |= set(instance_ips(self.moto, self.lineage()).values())
        return [temp_dir_for(str(self.root))] + [temp_dir_for(f"{self.root}@{ip}")
                                                 for ip in sorted(ips)]


@dataclass
class Verdict:
    scenario: str
    point: str
    fired: bool = False  # the event was seen while the command ran, and it was killed
    killed_at_serial: int = 0
    lock_path: str = ""  # how the killed run's lock went: "flock dropped", "force-unlock"...
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # kill / rerun / check seconds
    rerun_output: str = ""

    @property
    def converged(self) -> bool:
        return self.fired and not self.problems

    def line(self) -> str:
        status = "converged" if self.converged else ("NOT REACHED" if not self.fired
                                                     else "FAILED")
        return (f"{self.scenario}: kill {self.point} (serial {self.killed_at_serial}) -> "
                f"{status} in {self.seconds:.1f}s ("
                + " ".join(f"{k} {s:.1f}" for k, s in self.phases.items())
                + f"), lock: {self.lock_path or '-'}"
                + "".join(f"\n    - {p}" for p in self.problems))


def run_kill_point(sc: Scenario, point: KillPoint) -> Verdict:
    """Run sc.command, SIGKILL rhplan at `point`, run it again, check. Leaves the
    scenario converged (applied, or destroyed for a destroy) when it can."""
    t0 = time.monotonic()
    v = Verdict(f"{sc.provider}", point.name)
    rh = sc.rh
    api_log = rh.dir.parent / f"api-{time.monotonic_ns()}.log"
    rh.env["RHPLAN_AWS_API_LOG"] = str(api_log)
    start_serial = sc.serial()
    logins = point.server.accepted_logins() if point.server is not None else 0
    bg = rh.start(*sc.command, log_name="killed")
    watch = Watch(rh, bg.pid, start_serial, api_log, logins, sc)
    deadline = time.monotonic() + KILL_WAIT
    while bg.running() and time.monotonic() < deadline:
        if point.seen(watch):
            with contextlib.suppress(ProcessLookupError):
                os.kill(bg.pid, point.sig)
            break
        time.sleep(POLL)
    frozen = point.sig == signal.SIGSTOP
    if frozen:
        v.fired = wait_stopped(bg.pid)
        code = None if v.fired else bg.proc.poll()
    else:
        code = bg.finish(60).returncode
        v.fired = code == -signal.SIGKILL
    v.phases["kill"] = time.monotonic() - t0
    rh.env.pop("RHPLAN_AWS_API_LOG", None)
    v.killed_at_serial = sc.serial()
    if not v.fired:
        v.problems.append(f"the command ended (exit {code}) before the kill point was "
                          f"seen:\n{bg.text()[-1500:]}")
        v.seconds = time.monotonic() - t0
        return v
    v.problems += check_state_files(sc)
    emulate_terminations(sc)
    lock_id = killed_lock(sc, bg.pid, v, frozen)
    t1 = time.monotonic()
    try:
        again = rerun(sc, bg.pid, lock_id, v, frozen)
    finally:
        if frozen:  # the hung holder goes now; it must not resume
            with contextlib.suppress(ProcessLookupError):
                os.kill(bg.pid, signal.SIGKILL)
            bg.finish(60)
    v.phases["rerun"] = time.monotonic() - t1
    if again is not None:
        v.problems += converged(sc)
        v.phases["check"] = time.monotonic() - t1 - v.phases["rerun"]
    v.seconds = time.monotonic() - t0
    return v


def wait_stopped(pid: int, timeout: float = 10.0) -> bool:
    """True once pid is in the stopped state (T), within the bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        if stat[stat.rfind(b")") + 2:].split()[0] in (b"T", b"t"):
            return True
        time.sleep(0.01)
    return False


def emulate_terminations(sc: Scenario) -> None:
    """moto's instances exist only on paper and their Ray nodes run on this machine:
    when the killed run had terminated every instance of the cluster, their Ray goes
    the way it would on EC2 (SIGKILL, by pid, only this cluster's processes)."""
    if sc.moto is None or sc.skip_hosts or not sc.lineage():
        return
    states = instance_ips(sc.moto, sc.lineage(), with_state=True)
    if states and all(st in ("terminated", "shutting-down") for st in states.values()):
        for pid in cluster_processes(sc.temp_dirs(), sc.root):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def instance_ips(moto: Any, lineage: str, with_state: bool = False) -> dict[str, str]:
    """Every instance of the lineage (any state): id -> IP, or id -> state."""
    ec2 = moto.client("ec2")
    tag = [{"Name": "tag:rhplan:lineage", "Values": [lineage]}]
    out = {}
    for page in ec2.get_paginator("describe_instances").paginate(Filters=tag):
        for r in page["Reservations"]:
            for i in r["Instances"]:
                ip = i.get("PublicIpAddress") or i.get("PrivateIpAddress")
                if with_state:
                    out[i["InstanceId"]] = i["State"]["Name"]
                elif ip:
                    out[i["InstanceId"]] = ip
    return out


def check_state_files(sc: Scenario) -> list[str]:
    """The state and its backup (when there is one) parse as JSON and as a State."""
    problems = []
    for suffix in ("", ".backup"):
        raw = sc.state_bytes(suffix)
        if raw is None:
            continue
        try:
            State.from_json(json.loads(raw), source=f"state{suffix}")
        except Exception as exc:  # any failure to load is what this check reports
            problems.append(f"the state{suffix} does not load after the kill: {exc}")
    return problems


def lock_info(sc: Scenario) -> dict[str, Any] | None:
    """Who the state's lock says holds it (local: .lock.info; s3: KEY.tflock)."""
    bucket_key = s3_location(sc)
    if bucket_key is None:
        try:
            return json.loads(sc.rh.lock_info_path.read_text())
        except (OSError, ValueError):
            return None
    bucket, key = bucket_key
    try:
        obj = sc.s3().get_object(Bucket=bucket, Key=f"{key}.tflock")
    except sc.s3().exceptions.NoSuchKey:
        return None
    return json.loads(obj["Body"].read())


def s3_location(sc: Scenario) -> tuple[str, str] | None:
    text = (sc.rh.dir / "main.hcl").read_text() if (sc.rh.dir / "main.hcl").exists() else ""
    m = re.search(r'backend "s3" \{[^}]*bucket\s*=\s*"([^"]+)"[^}]*key\s*=\s*"([^"]+)"', text)
    return (m.group(1), m.group(2)) if m else None


def killed_lock(sc: Scenario, pid: int, v: Verdict, frozen: bool = False) -> str | None:
    """The lock the killed (or frozen) run left names it as the holder."""
    info = lock_info(sc)
    if info is None:
        v.lock_path = "none left"
        return None
    if f"pid {pid}" not in info.get("who", "") or info.get("operation") not in (
            "apply", "destroy"):
        v.problems.append(f"the lock left by the killed run does not name it (pid {pid}): "
                          f"{info}")
    if alive(pid) and not frozen:
        v.problems.append(f"the killed rhplan (pid {pid}) is still alive")
    return str(info.get("id"))


def rerun(sc: Scenario, pid: int, lock_id: str | None, v: Verdict, frozen: bool = False
          ) -> Any:
    """The same command again. A refusal may only name the killed holder and its lock;
    then force-unlock with that ID (the documented way) and run once more. A run that
    goes ahead past a dead holder's lock must say whose lock it cleared; past a live
    (frozen) holder's, it must not go at all."""
    res = sc.rh(*sc.rerun_command, timeout=RERUN_TIMEOUT)
    if frozen and not (res.returncode == 1 and "locked by" in res.output):
        v.problems.append(f"the lock of a live holder (pid {pid}, frozen) did not stop the "
                          f"next run:\n{res.describe()[-1500:]}")
        return None
    if res.returncode != 0 and "locked by" in res.output:
        line = res.error_line()
        if f"pid {pid}" not in line or (lock_id and lock_id not in line):
            v.problems.append(f"the refusal does not name the killed holder: {line}")
        if lock_id is None:
            v.problems.append(f"refused for a lock nobody left: {line}")
            return None
        if lock_info(sc) is None or lock_info(sc).get("id") != lock_id:
            v.problems.append("the lock changed while the next run was refused")
        sc.rh("force-unlock", lock_id).ok()
        v.lock_path = "refused naming the holder, cleared by force-unlock"
        res = sc.rh(*sc.rerun_command, timeout=RERUN_TIMEOUT)
    elif lock_id is not None:
        v.lock_path = "holder pid gone: the next run cleared it and said so"
        if f"pid {pid}" not in res.output:
            v.problems.append(f"the next run went past the lock of pid {pid} without "
                              "saying whose lock it cleared")
    v.rerun_output = res.output
    if res.returncode != 0:
        v.problems.append(f"running it again failed:\n{res.describe()[-3000:]}")
        return None
    left = lock_info(sc)
    if left is not None:
        v.problems.append(f"a lock is left after the next run ended: {left}")
    return res


def converged(sc: Scenario) -> list[str]:
    rh = sc.rh
    problems = []
    if sc.destroying:
        if sc.resources():
            problems.append(f"destroy left resources in the state: {sorted(sc.resources())}")
    else:
        res = rh("plan", "-detailed-exitcode", timeout=RERUN_TIMEOUT)
        if res.returncode != 0:
            problems.append(f"plan after the re-run still has changes:\n{res.stdout[-2500:]}")
    problems += ray_processes(sc)
    if sc.envs and not sc.destroying and not problems:
        problems += servlets_answer(sc)
    if sc.moto is not None:
        problems += aws_counts(sc)
    return problems


def ray_processes(sc: Scenario) -> list[str]:
    """Exactly one Ray head (GCS) and one servlet per env for this cluster; none after
    a destroy. Leftovers of the killed run (a second head, a stale servlet) show here."""
    if sc.skip_hosts:
        return []
    procs = cluster_processes(sc.temp_dirs(), sc.root)
    gcs = [p for p, cmd in procs.items() if "gcs_server" in cmd]
    servlets = [p for p, cmd in procs.items() if "EnvServlet" in cmd]
    if sc.destroying:
        # processes stop with a bound: give them a moment, then name what is left
        deadline = time.monotonic() + 20
        while procs and time.monotonic() < deadline:
            time.sleep(0.2)
            procs = cluster_processes(sc.temp_dirs(), sc.root)
        return [f"Ray processes outlived the destroy: {procs}"] if procs else []
    problems = []
    if len(gcs) != 1:
        problems.append(f"{len(gcs)} Ray heads (GCS) run for the cluster, not 1: {gcs}")
    if len(servlets) != len(sc.envs):
        problems.append(f"{len(servlets)} servlet processes for {len(sc.envs)} env(s): "
                        + "; ".join(procs[p] for p in servlets))
    return problems


_DRIVER = """
import json, sys
import rhplan
chdir, names = sys.argv[1], sys.argv[2:]
print("RESULT " + json.dumps({n: rhplan.servlet(n, chdir=chdir).call("os:getpid")
                              for n in names}), flush=True)
"""


def servlets_answer(sc: Scenario) -> list[str]:
    """Every env's servlet answers a call, from the process the state records."""
    want = {n: sc.resources()[f"env.{n}"]["attributes"].get("servlet_pid") for n in sc.envs}
    script = sc.rh.dir.parent / "servlets_answer.py"
    script.write_text(textwrap.dedent(_DRIVER))
    try:
        pids = run_driver(script, sc.rh.dir, *sc.envs, env={**os.environ, **sc.driver_env})
    except AssertionError as exc:  # a problem of this kill point, beside the others
        return [f"a servlet did not answer: {str(exc).strip()[-1500:]}"]
    return [f"servlet {n} answered from pid {pids[n]}, the state records {want[n]}"
            for n in sc.envs if pids[n] != want[n]]


def aws_counts(sc: Scenario) -> list[str]:
    """By the lineage tag: exactly the desired instances, one security group and one key
    pair while applied; nothing at all after a destroy."""
    lineage = sc.lineage()
    if not lineage:
        return ["no lineage in the state to count AWS resources by"]
    found = aws_resources(sc.moto, lineage)
    want = {"instances": 0, "security groups": 0, "key pairs": 0} if sc.destroying else {
        "instances": sc.instances, "security groups": 1, "key pairs": 1}
    problems = [f"{len(found[k])} {k} of lineage {lineage[:8]} in EC2, not {n}: {found[k]}"
                for k, n in want.items() if len(found[k]) != n]
    if not sc.destroying and not problems:
        problems += security_group_rules(sc.moto, found["security groups"][0])
        recorded = rh_instances(sc)
        if sorted(recorded) != sorted(found["instances"]):
            problems.append(f"the state records instances {recorded}, EC2 runs "
                            f"{found['instances']}: orphaned or lost")
    return problems


def security_group_rules(moto: Any, gid: str) -> list[str]:
    """The cluster's group lets SSH in and its instances talk to each other (Ray): a
    group adopted from a killed run must not lack what a fresh one has."""
    group = moto.client("ec2").describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    perms = group.get("IpPermissions") or []
    ssh = any(p.get("IpProtocol") == "tcp" and p.get("FromPort") == 22 for p in perms)
    own = any(p.get("IpProtocol") == "-1" and any(
        g.get("GroupId") == gid for g in p.get("UserIdGroupPairs") or []) for p in perms)
    return ([] if ssh else [f"security group {gid} does not let SSH (tcp/22) in: {perms}"]) + (
        [] if own else [f"security group {gid} does not let its own instances talk: {perms}"])


def rh_instances(sc: Scenario) -> list[str]:
    c = sc.resources().get(f"cluster.{sc.cluster}")
    return list((c or {}).get("attributes", {}).get("instance_ids") or [])


def aws_resources(moto: Any, lineage: str) -> dict[str, list[str]]:
    """Live instances, security groups and key pairs carrying the lineage tag."""
    ec2 = moto.client("ec2")
    tag = [{"Name": "tag:rhplan:lineage", "Values": [lineage]}]
    instances = [i["InstanceId"] for page in ec2.get_paginator("describe_instances")
                 .paginate(Filters=tag) for r in page["Reservations"] for i in r["Instances"]
                 if i["State"]["Name"] not in ("terminated", "shutting-down")]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=tag)["SecurityGroups"]]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs(Filters=tag)["KeyPairs"]]
    return {"instances": instances, "security groups": groups, "key pairs": keys}


# --------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------

def count_events(sc: Scenario) -> tuple[int, list[str]]:
    """Run sc.command once without a kill: how many state writes and which API calls
    it makes (the kill points of a sweep)."""
    api_log = sc.rh.dir.parent / f"api-count-{time.monotonic_ns()}.log"
    start = sc.serial()
    sc.rh(*sc.command, timeout=RERUN_TIMEOUT, env={"RHPLAN_AWS_API_LOG": str(api_log)}).ok()
    writes = sc.serial() - start
    calls = api_log.read_text().split() if api_log.exists() else []
    return writes, calls


def sweep_creates(sc: Scenario, points: Callable[[int, list[str]], list[KillPoint]]
                  ) -> list[Verdict]:
    """Kill points of a first apply, each from no state at all: one clean apply counts
    its state writes and API calls, `points(writes, calls)` turns them into kill points;
    after each one's verdict the scenario is destroyed and its state forgotten."""
    sc.command = ("apply", "-auto-approve")
    writes, calls = count_events(sc)
    reset(sc)
    verdicts = []
    for point in points(writes, calls):
        sc.command = ("apply", "-auto-approve")
        v = run_kill_point(sc, point)
        v.point = f"create: {v.point}"
        verdicts.append(v)
        print(v.line(), flush=True)
        reset(sc)
    return verdicts


def reset(sc: Scenario) -> None:
    sc.rh("destroy", "-auto-approve", timeout=RERUN_TIMEOUT).ok()
    sc.forget_state()


def figures(provider: str, verdicts: list[Verdict]) -> str:
    ok = sum(v.converged for v in verdicts)
    return (f"RELIABILITY: crash {provider}: kill points tried={len(verdicts)} "
            f"converged={ok} ({sum(v.seconds for v in verdicts):.0f} s)")
