#!/usr/bin/env python3
"""AWS provider at scale: how long, and how many EC2 API calls, does each phase of one
cluster's life take as it grows from 1 to 1,000 instances, and how much of it is
rhplan's own CPU rather than the moto server's?

Run (from the repository root, with the project's venv active; needs moto[server] and
ssh-keygen, no AWS account: everything goes to a moto server this script starts):

    python bench/aws_scale.py                       # N = 1, 10, 100, 1000 instances
    python bench/aws_scale.py --sizes 1,100 -v      # also every CLI run's output
    python bench/aws_scale.py --sizes 1,100,1000 --runs 3   # medians of 3 runs each
    python bench/aws_scale.py --no-bytecode         # every CLI start compiles its imports
    python bench/aws_scale.py --dir /tmp/rhplan-bench-aws    # keep files there
    python bench/aws_scale.py --sizes 100,1000 --runs 3 --amis lean   # a leaner moto (below)

What it does
------------
1. Starts a FRESH moto server (tests/support/motoserver.py) on a free port on 127.0.0.1, picks
   an x86_64 image from its describe_images, and makes an ed25519 key with ssh-keygen
   (the provider imports KEY.pub as the cluster's key pair).
   --amis full (the default) starts moto as the tests do, with its built-in image
   catalogue (~1,300 images in us-east-1). --amis lean starts it with MOTO_AMIS_PATH = a
   catalogue of ONE image (moto's amis.json entry LEAN_AMI, the one launched): moto
   5.2.5 scans its whole catalogue once per instance it launches (Instance.__init__'s
   describe_images), ~29 % of its CPU for a RunInstances of 1,000, work EC2 does not
   do. Every line of output says which moto it measured; compare like with like.
2. For each N, in a fresh directory (so a fresh state lineage), writes ONE cluster:
   provider "aws" (endpoint_url = the moto server), instance_type "m6i.large",
   num_instances = N, tags = { team = "ml" }, and runs the real CLI as a subprocess
   (`python -m rhplan.cli -chdir=DIR ...`, NO_COLOR=1, moto's fake credentials). The
   cluster's provider is aws_launch_only, a test provider found by entry point
   (tests/plugins, `uv pip install -e tests/plugins`): the aws provider's EC2 side, which
   never SSHes to the instances (moto's have no sshd). Each phase is timed from process
   start to exit; its own CPU seconds (user+sys, from wait4), the moto server's CPU
   seconds meanwhile (/proc/PID/stat) and its EC2 API calls (RHPLAN_AWS_API_LOG=FILE, one
   line per call) are taken. The CLI runs keep compiled bytecode in DIR/pycache (as a
   user's Python does, even if this shell sets PYTHONDONTWRITEBYTECODE=1), warmed by an
   unmeasured N = 1 round:
     create   `apply -auto-approve` (must say "1 added")
     plan     `plan` (a no-change plan with refresh: must print "No changes.")
     tag      tags = { team = "ml2" }, then `apply -auto-approve` (must be "1 changed",
              nothing added or destroyed; checked with boto3: every instance carries it)
     destroy  `destroy -auto-approve`
3. After create, checks that these are found by the same lookups (N live instances, one
   group, one key pair). After destroy, checks with boto3 that no instance tagged
   rhplan:lineage = the state's lineage is left non-terminated, and no security group or
   key pair named rhplan-<lineage[:8]>... Then resets the moto server for the next N.
4. Prints per N per phase: wall seconds, rhplan CPU, moto CPU, API calls and the calls
   by operation (with --runs K: each N measured K times, the median and the least of
   wall and CPU), the load average before and after each N (the machine may be shared:
   the CPU columns move less with load than wall), the comparison figures quoted in
   the issue (Terraform 1.11 + the AWS provider against moto), and PASS/FAIL (on the
   median) against the targets:
     - every phase at N = 100 within 3 s, and at the largest N (above 100) within
       5 s, process start to exit (wall: on a busy machine, compare the CPU columns);
     - API calls per phase do not grow with N: calls at the largest N <= calls at the
       smallest N + CALL_SLACK (waiter polls depend on timing, not on N).

Exit status: 0 when every target is met, 1 when one is missed, 2 when a phase failed,
printed the wrong thing or left something behind in the (moto) account.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

from motoserver import MotoServer, aws_env, image_catalogue  # noqa: E402

RHPLAN = [sys.executable, "-m", "rhplan.cli"]
PHASES = ("create", "plan", "tag", "destroy")
# process start to exit, per phase: at N <= 100, and at the largest N (1,000)
TARGET_SECONDS = 3.0
TARGET_SECONDS_LARGE = 5.0
CALL_SLACK = 2
RUN_TIMEOUT = 600.0
# --amis lean: the only image moto knows (an x86_64 one of its own amis.json)
LEAN_AMI = "ami-000c540e28953ace2"
# Quoted in the issue: Terraform 1.11 + hashicorp/aws against moto.
TERRAFORM = {"create": "~115 s (100 aws_instance)", "plan": "15 s (no-change plan, 100)",
             "tag": "-", "destroy": "66 s (50 aws_instance)"}
# short names for the compact breakdown
ABBREV = {"DescribeInstances": "DescInst", "DescribeTags": "DescTags", "DescribeImages":
          "DescImg", "DescribeKeyPairs": "DescKP", "DescribeSecurityGroups": "DescSG",
          "ImportKeyPair": "ImportKP", "DeleteKeyPair": "DelKP",
          "CreateSecurityGroup": "CreateSG", "DeleteSecurityGroup": "DelSG",
          "AuthorizeSecurityGroupIngress": "AuthIngress",
          "RevokeSecurityGroupIngress": "RevokeIngress", "RunInstances": "Run",
          "TerminateInstances": "Terminate", "CreateTags": "CreateTags",
          "DeleteTags": "DeleteTags"}


class BenchError(Exception):
    pass


# Where the CLI runs keep compiled bytecode (set in main): as a user's Python does, even
# when this shell has PYTHONDONTWRITEBYTECODE=1 (then every start compiles boto3,
# botocore and rhplan from source, ~1-4 s here); --no-bytecode measures that case.
BYTECODE_ENV: dict[str, str] = {}


def hcl(moto_url: str, n: int, ami: str, key: Path, team: str) -> str:
    return f"""# generated by bench/aws_scale.py
provider "aws" {{
  region       = "us-east-1"
  endpoint_url = "{moto_url}"
}}

cluster "rh-cpu" {{
  provider      = "aws_launch_only"
  instance_type = "m6i.large"
  num_instances = {n}
  image_id      = "{ami}"
  tags          = {{ team = "{team}" }}
  allowed_cidrs = ["198.51.100.0/24"]
  ssh {{
    user           = "ubuntu"
    private_key    = "{key}"
    host_key_check = "trust_on_first_use"
  }}
}}
"""


def cpu_of(pid: int | None) -> float:
    """user+sys CPU seconds a running process has used so far (Linux /proc)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(directory: Path, log: Path, moto_pid: int | None, *args: str
              ) -> dict[str, Any]:
    """One CLI process: wall seconds from start to exit, its own CPU seconds (user+sys
    from wait4, so the moto server's work is not in it), the moto server's CPU seconds
    meanwhile, its output and its API calls."""
    log.unlink(missing_ok=True)
    env = aws_env()
    env.update(NO_COLOR="1", RHPLAN_AWS_API_LOG=str(log))
    env.update(BYTECODE_ENV)
    if "PYTHONPYCACHEPREFIX" in BYTECODE_ENV:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryFile() as out_file:
        moto0 = cpu_of(moto_pid)
        t0 = time.perf_counter()
        proc = subprocess.Popen([*RHPLAN, f"-chdir={directory}", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=out_file,
                                stderr=subprocess.STDOUT)
        deadline = t0 + RUN_TIMEOUT
        while True:  # wait4 (not Popen.wait): the child's own rusage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise BenchError(f"rhplan {' '.join(args)} ran longer than {RUN_TIMEOUT} s")
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        moto_cpu = cpu_of(moto_pid) - moto0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        out = out_file.read().decode(errors="replace")
    calls = log.read_text().split() if log.exists() else []
    if proc.returncode != 0:
        raise BenchError(f"rhplan {' '.join(args)} exited {proc.returncode}:\n{out[-3000:]}")
    return {"seconds": wall, "cpu": usage.ru_utime + usage.ru_stime, "moto_cpu": moto_cpu,
            "calls": len(calls), "ops": dict(collections.Counter(calls)), "output": out}


def expect(cond: bool, what: str, r: dict[str, Any]) -> None:
    if not cond:
        raise BenchError(f"{what}; the output was:\n{r['output'][-3000:]}")


def lineage_leftovers(ec2: Any, lineage: str) -> list[str]:
    left = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}]):
        for res in page["Reservations"]:
            left += [f"instance {i['InstanceId']} ({i['State']['Name']})"
                     for i in res["Instances"] if i["State"]["Name"] != "terminated"]
    prefix = f"rhplan-{lineage[:8]}"
    left += [f"security group {g['GroupName']} ({g['GroupId']})"
             for g in ec2.describe_security_groups()["SecurityGroups"]
             if g["GroupName"].startswith(prefix)]
    left += [f"key pair {k['KeyName']}" for k in ec2.describe_key_pairs()["KeyPairs"]
             if k["KeyName"].startswith(prefix)]
    return left


def measure(moto: MotoServer, n: int, base: Path, ami: str, key: Path) -> dict[str, Any]:
    directory = base / f"n{n}"
    directory.mkdir(parents=True, exist_ok=True)
    logs = base / f"n{n}-logs"
    logs.mkdir(exist_ok=True)
    main = directory / "main.hcl"
    main.write_text(hcl(moto.url, n, ami, key, "ml"))
    ec2 = moto.client("ec2")
    moto_pid = moto.proc.pid if moto.proc is not None else None
    result: dict[str, Any] = {"n": n}
    created = False
    try:
        r = run_phase(directory, logs / "create.log", moto_pid, "apply", "-auto-approve")
        created = True
        expect("Resources: 1 added, 0 changed, 0 destroyed." in r["output"],
               "apply did not create exactly the cluster", r)
        result["create"] = r
        lineage = json.loads((directory / "rhplan.state.json").read_text())["lineage"]
        result["lineage"] = lineage
        # the leftover check after destroy must be able to see what apply made
        made = lineage_leftovers(ec2, lineage)
        kinds = collections.Counter(x.split(" ")[0] for x in made)
        if kinds != {"instance": n, "security": 1, "key": 1}:
            raise BenchError(f"after create, expected {n} instance(s), 1 security group and "
                             f"1 key pair of lineage {lineage}, found: {dict(kinds)}")

        r = run_phase(directory, logs / "plan.log", moto_pid, "plan")
        expect("No changes." in r["output"], "the plan after apply is not a no-change plan", r)
        result["plan"] = r

        main.write_text(hcl(moto.url, n, ami, key, "ml2"))
        r = run_phase(directory, logs / "tag.log", moto_pid, "apply", "-auto-approve")
        expect("Resources: 0 added, 1 changed, 0 destroyed." in r["output"],
               "the tag change was not one in-place update", r)
        result["tag"] = r
        live = [i for page in ec2.get_paginator("describe_instances").paginate(
                    Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}])
                for res in page["Reservations"] for i in res["Instances"]
                if i["State"]["Name"] != "terminated"]
        teams = collections.Counter({t["Key"]: t["Value"] for t in i.get("Tags") or []}
                                    .get("team") for i in live)
        if len(live) != n or teams != {"ml2": n}:
            raise BenchError(f"after the tag change: {len(live)} live instance(s) (want {n}),"
                             f" team tags {dict(teams)} (want all ml2)")

        r = run_phase(directory, logs / "destroy.log", moto_pid, "destroy", "-auto-approve")
        created = False
        result["destroy"] = r
        left = lineage_leftovers(ec2, lineage)
        if left:
            raise BenchError(f"N={n}: destroy left {len(left)} thing(s) of lineage {lineage}:"
                             f" " + ", ".join(left[:10]))
        return result
    finally:
        if created:  # a phase failed after instances existed: clean up, best effort
            env = aws_env()
            env.update(NO_COLOR="1")
            subprocess.run([*RHPLAN, f"-chdir={directory}", "destroy", "-auto-approve"],
                           capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env,
                           check=False)


def summary(n: int, runs: list[dict[str, Any]], load: tuple[float, float]
            ) -> dict[str, Any]:
    """One N's runs as one row per phase: median and least wall and CPU seconds, median
    moto CPU, and the calls of the run that made the most."""
    out: dict[str, Any] = {"n": n, "load": load, "runs": len(runs)}
    for ph in PHASES:
        ms = [r[ph] for r in runs]
        most = max(ms, key=lambda m: m["calls"])
        out[ph] = {"seconds": statistics.median(m["seconds"] for m in ms),
                   "least_seconds": min(m["seconds"] for m in ms),
                   "cpu": statistics.median(m["cpu"] for m in ms),
                   "least_cpu": min(m["cpu"] for m in ms),
                   "moto_cpu": statistics.median(m["moto_cpu"] for m in ms),
                   "calls": most["calls"], "ops": most["ops"]}
    return out


def compact(ops: dict[str, int]) -> str:
    return " ".join(f"{ABBREV.get(k, k)}:{v}" for k, v in sorted(ops.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1,10,100,1000", help="comma-separated instance counts")
    ap.add_argument("--dir", help="keep files here (default: a temp dir, removed)")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="let the CLI runs compile every module at each start, as with "
                         "PYTHONDONTWRITEBYTECODE=1 and no .pyc files (default: a bytecode "
                         "cache under the bench dir, warmed by a first run)")
    ap.add_argument("--runs", type=int, default=1,
                    help="measure each N this many times (fresh state and moto reset each "
                         "time) and print the median and the least of each phase")
    ap.add_argument("--amis", choices=("full", "lean"), default="full",
                    help="moto's image catalogue: full (built in, as the tests' moto) or "
                         "lean (one image: no per-instance scan of ~1,300; see above)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print the output of every CLI run")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    top = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rhplan-bench-aws-"))
    top.mkdir(parents=True, exist_ok=True)
    if not args.no_bytecode:
        BYTECODE_ENV["PYTHONPYCACHEPREFIX"] = str(top / "pycache")
    moto = MotoServer(log_dir=top, env=image_catalogue(top / "amis.json", LEAN_AMI)
                      if args.amis == "lean" else None)
    amis = ("LEAN: MOTO_AMIS_PATH, a catalogue of 1 image (no per-instance scan of moto's "
            "built-in ~1,300)" if args.amis == "lean" else "moto's built-in catalogue (as "
            "the tests' moto)")
    results = []
    try:
        moto.start()
        images = moto.client("ec2").describe_images()["Images"]
        ami = sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]
        key = top / "key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "", "-f", str(key), "-q"],
                           check=True)
        print(f"moto server {moto.url}, image {ami}, files in {top}", flush=True)
        print(f"moto images: {amis}")
        print("bytecode: " + ("none cached, every CLI start compiles what it imports"
                              if args.no_bytecode else f"cached in {top / 'pycache'}"))
        if not args.no_bytecode:
            print("warm-up (not measured): N = 1 ...", flush=True)
            measure(moto, 1, top / "warm-up", ami, key)
        for n in sizes:
            runs = []
            load = os.getloadavg()[0]
            for k in range(max(1, args.runs)):
                moto.reset()
                print(f"N = {n}: create, plan, tag, destroy"
                      + (f" (run {k + 1} of {args.runs})" if args.runs > 1 else "") + " ...",
                      flush=True)
                r = measure(moto, n, top / f"run{k}" if args.runs > 1 else top, ami, key)
                runs.append(r)
                if args.verbose:
                    for ph in PHASES:
                        print(f"--- N={n} {ph} output:\n{r[ph]['output']}")
            results.append(summary(n, runs, (load, os.getloadavg()[0])))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    finally:
        moto.stop()
        if not args.dir:
            shutil.rmtree(top, ignore_errors=True)

    table(results, args.runs > 1, amis)
    return 0 if verdict(results, " (LEAN moto)" if args.amis == "lean" else "") else 1


def table(results: list[dict[str, Any]], many: bool, amis: str) -> None:
    print("\n      N  phase      wall s  rhplan CPU s  moto CPU s  API calls  calls by operation"
          + ("     (median of runs; least in brackets)" if many else ""))
    for r in results:
        for ph in PHASES:
            m = r[ph]
            wall = f"{m['seconds']:.2f}" + (f" ({m['least_seconds']:.2f})" if many else "")
            cpu = f"{m['cpu']:.2f}" + (f" ({m['least_cpu']:.2f})" if many else "")
            print(f"  {r['n']:>5}  {ph:<8} {wall:>8}  {cpu:>12}  "
                  f"{m['moto_cpu']:>10.2f}  {m['calls']:>9}  {compact(m['ops'])}")
        print(f"  {'':>5}  (load average, 1 min: {r['load'][0]:.2f} before, "
              f"{r['load'][1]:.2f} after; {r['runs']} run(s))")
    print("\n  (wall: CLI process start to exit, provider aws_launch_only; rhplan CPU: "
          "that process's user+sys from wait4; moto CPU: the moto server's user+sys "
          "meanwhile; calls: every EC2 API call the process made, the most of any run)")
    print(f"  moto images: {amis}")
    print("  Terraform 1.11 + AWS provider against moto (from the issue): "
          + "; ".join(f"{ph} {v}" for ph, v in TERRAFORM.items() if v != "-"))


def verdict(results: list[dict[str, Any]], lean: str) -> bool:
    """PASS/FAIL per target (see the module's docstring); True when all are met."""
    ok = True
    big, small = results[-1], results[0]
    print()
    for r in results:
        if r["n"] < 100 and r is not big:
            continue
        target = TARGET_SECONDS if r["n"] <= 100 else TARGET_SECONDS_LARGE
        for ph in PHASES:
            s = r[ph]["seconds"]
            met = s <= target
            ok &= met
            print(f"{'PASS' if met else 'FAIL'}: N={r['n']} {ph}: {s:.2f} s wall, "
                  f"{r[ph]['cpu']:.2f} s rhplan CPU (target <= {target:.0f} s){lean}")
    for ph in PHASES:
        a, b = small[ph]["calls"], big[ph]["calls"]
        met = b <= a + CALL_SLACK
        ok &= met
        grew = {k: (small[ph]["ops"].get(k, 0), v) for k, v in big[ph]["ops"].items()
                if v != small[ph]["ops"].get(k, 0)}
        detail = ("; differs: " + ", ".join(f"{k} {x}->{y}" for k, (x, y) in grew.items())
                  if grew else "")
        print(f"{'PASS' if met else 'FAIL'}: {ph}: {a} API calls at N={small['n']}, {b} at "
              f"N={big['n']} (target: at most +{CALL_SLACK}){detail}")
    return ok

if __name__ == "__main__":
    sys.exit(main())
