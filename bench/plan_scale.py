#!/usr/bin/env python3
"""Plan-at-scale benchmark for rhplan: how long does a no-change plan of ~2,000 envs take?

Run (from the repository root, with the project's venv active):

    python bench/plan_scale.py                       # 2,000 envs over 20 clusters, temp dir
    python bench/plan_scale.py --envs 2000 --clusters 20 --dir /tmp/rhplan-bench
    python bench/plan_scale.py --profile             # also cProfile one warm plan
    python bench/plan_scale.py --bytecode            # CLI runs may cache bytecode
    python bench/plan_scale.py --for-each            # the envs as ONE for_each block

What it does
------------
1. Generates a configuration into a temp dir (or --dir): one main.hcl (backend, variables,
   locals, a secret, a git package, outputs), clusters.hcl (N `cluster` blocks,
   provider = "local") and several envs_NN.hcl files holding the `env` blocks (3-6 reqs
   each, an env_vars map, interpolation of var.* and local.*, some depends_on, a few
   setup_cmds / secrets / package / local-folder reqs). Prints line and block counts.
2. Builds the state a previous apply would have left, without installing anything: it
   plans against an empty state, turns every planned create into a ResourceState (the
   planned attributes, plus `installed` = {req: ["name==version"]} that apply would
   record), records the outputs, and writes it with LocalBackend. The next plan must then
   be a true no-change plan; every measured plan is checked for 0 changes and the
   benchmark fails loudly (listing the differing attributes) otherwise.
3. Measures, in a fresh Python process so "cold" is honest, each phase separately:
     parse   load_config(DIR)            (*.hcl -> Config; cache in ~/.cache/rhplan/hcl)
     vars    resolve_variables(cfg)
     state   LocalBackend(path).read()
     graph   build_graph(cfg)
     diff    Planner(cfg, RunContext(DIR), vars).plan(state, PlanOptions())  (no refresh;
             note Planner() builds the graph again internally)
     render  render_plan(plan)
   cold = the parse cache emptied first (a file outside the fast reader's subset would
   also pay lark's grammar load); warm = the cache filled, 3 runs (--repeat), median
   reported. Each plan runs in its own fresh interpreter, with the CLI's garbage
   collector set-up.
   Also the end-to-end CLI `rhplan -chdir=DIR plan -refresh=false -detailed-exitcode`
   wall time, cold and warm (a subprocess: interpreter start-up and imports included).
4. Prints a table, peak RSS, and PASS/FAIL against the targets (issue 17 item 5): a
   warm no-change plan of 2,000+ resources in <= 1 s, in-process and through the CLI
   (process start to exit), and <= 3 s cold through the CLI (empty parse cache). The
   CLI's CPU seconds are printed beside its wall time: on a shared machine they are
   the steadier figure.

Exit status: 0 when every target is met, 1 when one is missed, 2 when a plan that must be
a no-change plan is not (a bug in rhplan or in this benchmark's state building).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_SECONDS = 1.0  # warm, in-process and through the CLI
COLD_TARGET_SECONDS = 3.0  # through the CLI, empty parse cache
PHASES = ("parse", "vars", "state", "graph", "diff", "render")
MARKER = ".plan_scale"  # marks a directory this script generated (safe to regenerate)

# Realistic pinned pip requirements: (name, version).
PIP_POOL = [
    ("six", "1.16.0"), ("idna", "3.7"), ("certifi", "2024.2.2"),
    ("charset-normalizer", "3.3.2"), ("urllib3", "2.2.1"), ("requests", "2.31.0"),
    ("packaging", "24.2"), ("attrs", "23.2.0"), ("PyYAML", "6.0.1"), ("click", "8.1.7"),
    ("tqdm", "4.66.2"), ("typing-extensions", "4.11.0"), ("python-dateutil", "2.9.0"),
    ("pytz", "2024.1"), ("filelock", "3.13.4"), ("fsspec", "2024.3.1"),
    ("jinja2", "3.1.3"), ("markupsafe", "2.1.5"), ("pydantic", "2.7.0"),
    ("orjson", "3.10.1"), ("rich", "13.7.1"), ("tabulate", "0.9.0"),
    ("cloudpickle", "3.0.0"), ("msgpack", "1.0.8"), ("psutil", "5.9.8"),
]
# Versions pinned through local.pins (interpolated: "pip:numpy==${local.pins.numpy}").
PINS = {"numpy": "1.26.4", "pandas": "2.2.2", "pyarrow": "15.0.2", "scipy": "1.13.0"}
LOCAL_LIB = ("./libs/shared", "shared-lib", "0.1.0")
GIT_PKG = ("shared-tools", "v1.2.0")


# ---------------------------------------------------------------------------
# 1. configuration generator
# ---------------------------------------------------------------------------

def generate(d: Path, n_envs: int, n_clusters: int, seed: int = 1, for_each: bool = False
             ) -> dict[str, int]:
    rng = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    existing = [p for p in d.glob("*.hcl")]
    if existing and not (d / MARKER).exists():
        sys.exit(f"{d} holds *.hcl files this benchmark did not write; pass an empty --dir")
    for p in existing:
        p.unlink()
    for name in ("rhplan.state.json", "rhplan.state.json.backup"):
        (d / name).unlink(missing_ok=True)
    shutil.rmtree(d / ".rhplan", ignore_errors=True)
    (d / MARKER).write_text("generated by bench/plan_scale.py\n")

    # a small local package some envs install (its tree hash is computed while planning)
    lib = d / "libs" / "shared"
    (lib / "shared_lib").mkdir(parents=True, exist_ok=True)
    (lib / "pyproject.toml").write_text(
        '[project]\nname = "shared-lib"\nversion = "0.1.0"\n')
    (lib / "shared_lib" / "__init__.py").write_text("VERSION = '0.1.0'\n")

    files: dict[str, list[str]] = {}
    main = [
        "# generated by bench/plan_scale.py",
        "rhplan {",
        '  backend "local" { path = "rhplan.state.json" }',
        "}",
        "",
        'variable "team" {',
        '  default     = "ml-platform"',
        '  description = "Owning team, passed to every env."',
        "}",
        "",
        'variable "stage" {',
        '  type    = string',
        '  default = "prod"',
        "}",
        "",
        'variable "data_root" {',
        '  default = "/mnt/data"',
        "}",
        "",
        'variable "autostop_mins" {',
        "  type    = number",
        "  default = 60",
        "}",
        "",
        "locals {",
        "  pins = {",
        *[f'    {k} = "{v}"' for k, v in PINS.items()],
        "  }",
        '  log_level = "INFO"',
        '  region    = "us-east-1"',
        '  owner     = "${var.team}-${var.stage}"',
        "}",
        "",
        'secret "api" {',
        '  values = { API_TOKEN = env("RHPLAN_BENCH_TOKEN", "bench-token") }',
        "}",
        "",
        'package "shared_tools" {',
        f'  git_url  = "https://github.com/example/{GIT_PKG[0]}.git"',
        f'  revision = "{GIT_PKG[1]}"',
        "}",
        "",
        'output "first_env_python" {',
        '  value = env.e["e0000"].python' if for_each else "  value = env.e0000.python",
        "}",
        "",
        'output "cluster_root" {',
        "  value = cluster.c00.root_dir",
        "}",
    ]
    files["main.hcl"] = main

    clusters = ["# generated by bench/plan_scale.py"]
    for k in range(n_clusters):
        clusters += [
            f'cluster "c{k:02d}" {{',
            '  provider      = "local"',
            "  autostop_mins = var.autostop_mins",
            "  autostop_command = \"echo idle\"",
            '  python        = "python3"',
            "  create_default_env = false",  # its many envs name their own (no bare env)
            "}",
            "",
        ]
    files["clusters.hcl"] = clusters

    per_file = 250
    n_files = max(1, (n_envs + per_file - 1) // per_file)
    env_lines: list[list[str]] = [["# generated by bench/plan_scale.py"] for _ in range(n_files)]
    entries: list[list[str]] = []  # --for-each: local.envs, one entry per env
    for i in range(n_envs):
        name = f"e{i:04d}"
        cluster = f"c{i % n_clusters:02d}"
        n_reqs = rng.randint(3, 6)
        reqs: list[str] = []
        # one interpolated pin through local.pins in about half of the envs
        if i % 2 == 0:
            pin = rng.choice(sorted(PINS))
            reqs.append(f'"pip:{pin}==${{local.pins.{pin}}}"')
        if i % 100 == 7:
            reqs.append(f'"{LOCAL_LIB[0]}"')
        if i % 50 == 3:
            reqs.append("package.shared_tools")
        for pname, pver in rng.sample(PIP_POOL, n_reqs - len(reqs)):
            # mostly "pip:NAME==VER", some bare "NAME==VER" (a bare name means pip)
            reqs.append(f'"{pname}=={pver}"' if rng.random() < 0.2 else f'"pip:{pname}=={pver}"')
        block = [
            f'env "{name}" {{',
            f"  cluster = cluster.{cluster}",
            "  reqs = [",
            *[f"    {r}," for r in reqs],
            "  ]",
            "  env_vars = {",
            "    TEAM      = var.team",
            "    STAGE     = upper(var.stage)",
            f'    ENV_NAME  = "{name}"',
            f'    SHARD     = "{i % 16}"',
            "    LOG_LEVEL = local.log_level",
            f'    DATA_DIR  = "${{var.data_root}}/{name}"',
            '    OWNER     = "${local.owner}"',
            "  }",
        ]
        if i % 10 == 5:
            block.append(f'  setup_cmds = ["mkdir -p /tmp/{name}", "echo ready"]')
        if i % 40 == 11:
            block.append("  secrets = [secret.api]")
        if i % 7 == 6 and i >= n_clusters:
            dep = f"e{rng.randrange(max(0, i - 200), i):04d}"
            block.append(f"  depends_on = [env.{dep}]")
        block += ["}", ""]
        if for_each:  # the same env as one entry of local.envs (depends_on cannot be)
            setup = [ln for ln in block if ln.startswith("  setup_cmds")]
            entries.append([
                f"    {name} = {{",
                f'      cluster = "{cluster}"',
                f"      reqs    = [{', '.join(reqs)}]",
                f'      shard   = "{i % 16}"',
                "      setup   = " + (setup[0].split("=", 1)[1].strip() if setup else "[]"),
                "      secrets = " + ("[secret.api]" if i % 40 == 11 else "[]"),
                "    }",
            ])
            continue
        env_lines[i // per_file] += block
    if for_each:  # issue 14: one block with for_each over the same 2,000 keys
        files["env_table.hcl"] = [
            "# generated by bench/plan_scale.py --for-each", "locals {",
            "  clusters = {",
            *[f"    c{k:02d} = cluster.c{k:02d}" for k in range(n_clusters)],
            "  }", "  envs = {", *[ln for e in entries for ln in e], "  }", "}"]
        env_lines = [[
            "# generated by bench/plan_scale.py --for-each",
            'env "e" {',
            "  for_each   = local.envs",
            "  cluster    = local.clusters[each.value.cluster]",
            "  reqs       = each.value.reqs",
            "  setup_cmds = each.value.setup",
            "  secrets    = each.value.secrets",
            "  env_vars = {",
            "    TEAM      = var.team",
            "    STAGE     = upper(var.stage)",
            "    ENV_NAME  = each.key",
            "    SHARD     = each.value.shard",
            "    LOG_LEVEL = local.log_level",
            '    DATA_DIR  = "${var.data_root}/${each.key}"',
            '    OWNER     = "${local.owner}"',
            "  }",
            "}",
        ]]
    for j, lines in enumerate(env_lines):
        files[f"envs_{j:02d}.hcl"] = lines

    total_lines = 0
    for fname, lines in files.items():
        (d / fname).write_text("\n".join(lines) + "\n")
        total_lines += len(lines)
    return {"files": len(files), "lines": total_lines, "clusters": n_clusters, "envs": n_envs,
            "other_blocks": 2, "bytes": sum((d / f).stat().st_size for f in files)}


# ---------------------------------------------------------------------------
# 2. the recorded state a previous apply would have left
# ---------------------------------------------------------------------------

def _installed_for(req: str, planned: dict[str, dict[str, Any]], base: Path) -> list[str]:
    """What apply records for one reqs entry: the distributions it installed."""
    from packaging.requirements import Requirement as PipReq

    from rhplan.packages import parse_requirement

    if req.startswith("package."):
        return [f"{GIT_PKG[0]}=={GIT_PKG[1].lstrip('v')}"]
    r = parse_requirement(req, base)
    if r.kind == "local":
        return [f"{LOCAL_LIB[1]}=={LOCAL_LIB[2]}"]
    pr = PipReq(r.target)
    pins = [s.version for s in pr.specifier if s.operator == "=="]
    return [f"{r.name}=={pins[0]}" if pins else r.name or r.target]


# Plausible values for attributes only apply can tell ("known after apply"), by name;
# anything else unknown gets a value of its schema type.
AFTER_APPLY = {
    "ray_address": lambda a, i: "127.0.0.1:6379",
    "ray_version": lambda a, i: "2.9.3",
    "ray_python": lambda a, i: sys.executable,
    "ray_status": lambda a, i: "running",
    "resources": lambda a, i: {"CPU": os.cpu_count() or 1, "GPU": 0},
    "ips": lambda a, i: ["127.0.0.1"],
    "servlet": lambda a, i: "running",
    "servlet_pid": lambda a, i: 40000 + i,
    "path": lambda a, i: f"/var/lib/rhplan/hosts/envs/{a.get('name', i)}",
    "python": lambda a, i: f"/var/lib/rhplan/hosts/envs/{a.get('name', i)}/bin/python",
}


def _after_apply_value(rtype: str, name: str, attrs: dict[str, Any], i: int) -> Any:
    from rhplan.config.schema import RESOURCE_SCHEMAS

    if name in AFTER_APPLY:
        return AFTER_APPLY[name](attrs, i)
    spec = RESOURCE_SCHEMAS[rtype].attrs.get(name)
    t = spec.type if spec else "string"
    if t == "number":
        return i
    if t == "bool":
        return True
    if t.startswith("list("):
        return []
    if t.startswith("map(") or t == "any":
        return {}
    return f"bench-{name}-{i}"


def build_state(d: Path) -> dict[str, Any]:
    from rhplan.config.inputs import resolve_variables
    from rhplan.config.load import load_config
    from rhplan.config.values import UNKNOWN, is_known
    from rhplan.plan.planner import Planner, PlanOptions
    from rhplan.provider import RunContext
    from rhplan.state import LocalBackend, ResourceState, State, digest

    t0 = time.perf_counter()
    cfg = load_config(d)
    variables = resolve_variables(cfg)
    t1 = time.perf_counter()
    ctx = RunContext(d)
    # one backend for the key and the write: the key it makes is stored with the state
    backend = LocalBackend(d / "rhplan.state.json")
    digest.use_key(ctx, backend.digest_key)  # as the CLI does
    planner = Planner(cfg, ctx, variables)
    plan = planner.plan(State.new(), PlanOptions(variables=variables))
    t2 = time.perf_counter()
    from rhplan.views.plan import render_plan
    text = render_plan(plan)
    t3 = time.perf_counter()

    state = State.new()
    for c in plan.changes:
        if c.action != "create":
            raise SystemExit(f"FAIL: planning against an empty state gave {c.action} for "
                             f"{c.address}; expected create")
        attrs = dict(c.after or {})
        if c.type == "env":
            attrs["installed"] = {r: _installed_for(r, planner.planned, d) for r in attrs["reqs"]}
        for k, v in list(attrs.items()):
            if v is UNKNOWN:
                attrs[k] = _after_apply_value(c.type, k, attrs, len(state.resources))
        unknown = sorted(k for k, v in attrs.items() if not is_known(v))
        if unknown:
            raise SystemExit(f"FAIL: {c.address} still has unknown attributes after the "
                             f"simulated apply: {unknown}")
        state.resources[c.address] = ResourceState(
            c.address, c.type, c.name, c.provider, attrs, list(c.dependencies), {})
    for name, o in plan.output_changes.items():
        if o["after"] is not UNKNOWN and o["after"] is not None:
            state.outputs[name] = {"value": o["after"], "sensitive": o["sensitive"]}
    t4 = time.perf_counter()
    backend.write(state)
    t5 = time.perf_counter()
    return {
        "creates": len(plan.changes), "render_lines": text.count("\n"),
        "initial_parse_s": t1 - t0, "initial_plan_s": t2 - t1, "initial_render_s": t3 - t2,
        "state_write_s": t5 - t4, "state_bytes": (d / "rhplan.state.json").stat().st_size,
    }


# ---------------------------------------------------------------------------
# 3. measurement (runs in a fresh interpreter: --_worker)
# ---------------------------------------------------------------------------

def _explain_changes(plan: Any, limit: int = 10) -> str:
    out = []
    for c in [c for c in plan.changes if c.action != "no-op"][:limit]:
        before, after = c.before or {}, c.after or {}
        diffs = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
                 for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        out.append(f"  {c.address}: {c.action} ({c.reason}); " + "; ".join(diffs))
    for name, o in plan.output_changes.items():
        if o["action"] != "no-op":
            out.append(f"  output {name}: {o['action']} {o['before']!r} -> {o['after']!r}")
    return "\n".join(out)


def _one_plan(d: Path, timings: dict[str, float]) -> Any:
    from rhplan.config.inputs import resolve_variables
    from rhplan.config.load import load_config
    from rhplan.graph import build_graph
    from rhplan.plan.planner import Planner, PlanOptions
    from rhplan.provider import RunContext
    from rhplan.state import LocalBackend, digest
    from rhplan.views.plan import render_plan

    pc = time.perf_counter
    t = pc()
    cfg = load_config(d)
    timings["parse"] = pc() - t
    t = pc()
    variables = resolve_variables(cfg)
    timings["vars"] = pc() - t
    t = pc()
    state = LocalBackend(d / "rhplan.state.json").read()
    timings["state"] = pc() - t
    t = pc()
    build_graph(cfg)
    timings["graph"] = pc() - t
    t = pc()
    ctx = RunContext(d)
    digest.use_key(ctx, LocalBackend(d / "rhplan.state.json").digest_key)  # the state's key
    plan = Planner(cfg, ctx, variables).plan(state, PlanOptions(variables=variables))
    timings["diff"] = pc() - t
    t = pc()
    text = render_plan(plan)
    timings["render"] = pc() - t
    timings["total"] = sum(timings[p] for p in PHASES)
    if plan.has_changes:
        print(f"FAIL: the plan against the recorded state is not a no-change plan "
              f"({plan.counts()} add/change/destroy):\n{_explain_changes(plan)}",
              file=sys.stderr)
        sys.exit(2)
    if not text.startswith("No changes."):
        print(f"FAIL: render of a no-change plan says:\n{text[:500]}", file=sys.stderr)
        sys.exit(2)
    return len(plan.changes)  # resource instances (one for_each block makes 2,000)


def worker(d: Path, cold: bool, profile: str | None) -> None:
    """One plan in this fresh interpreter, as one `rhplan plan` would make it: the parse
    cache emptied first when cold. (Plans repeated in one process measured the garbage
    of the earlier ones, not what a user waits for.)"""
    import contextlib
    try:
        from rhplan.cli import gc_paused, tune_gc
    except ImportError:  # an older rhplan (to compare): what its main() did
        import gc

        def tune_gc() -> None:
            gc.freeze()
            gc.set_threshold(50_000, 50, 100)
        gc_paused = contextlib.nullcontext
    tune_gc()  # what `rhplan` does first, so in-process figures are the CLI's
    t = time.perf_counter()
    import rhplan.config.decode  # noqa: F401  (what `rhplan plan` imports, roughly)
    import rhplan.config.load  # noqa: F401
    import rhplan.graph  # noqa: F401
    import rhplan.plan.planner  # noqa: F401
    import rhplan.state  # noqa: F401
    import rhplan.views.plan  # noqa: F401
    imports = time.perf_counter() - t

    if cold:
        shutil.rmtree(d / ".cache", ignore_errors=True)
    timings: dict[str, float] = {}
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    with gc_paused():  # as `rhplan plan` plans
        n = _one_plan(d, timings)
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    json.dump({"resources": n, "imports": imports, "timings": timings,
               "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, sys.stdout)


def run_worker(d: Path, cold: bool, profile: str | None = None) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", str(d)]
    cmd += ["--_cold"] if cold else []
    cmd += ["--_profile_out", profile] if profile else []
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        print("FAIL: the measuring process failed (see above)")
        sys.exit(p.returncode if p.returncode == 2 else 1)
    return json.loads(p.stdout)


CLI_CPU: list[float] = []  # CPU seconds (user + system) of each CLI run, in order


def run_cli(d: Path) -> tuple[float, int, str, int]:
    """(wall seconds, exit code, output, peak RSS in KiB) of one `rhplan plan`; its CPU
    seconds go to CLI_CPU (steadier than wall time on a shared machine)."""
    exe = shutil.which("rhplan", path=str(Path(sys.executable).parent) + os.pathsep +
                       os.environ.get("PATH", ""))
    cmd = [exe] if exe else [sys.executable, "-m", "rhplan.cli"]
    cmd += [f"-chdir={d}", "-no-color", "plan", "-refresh=false", "-detailed-exitcode"]
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage
        elapsed = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        CLI_CPU.append(usage.ru_utime + usage.ru_stime)
        out.seek(0)
        text = out.read().decode(errors="replace")
    return elapsed, p.returncode, text, usage.ru_maxrss


# ---------------------------------------------------------------------------
# 4. report
# ---------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", type=int, default=2000)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--dir", help="generate here (default: a temp dir, removed afterwards)")
    ap.add_argument("--repeat", type=int, default=3, help="warm runs (median reported)")
    ap.add_argument("--for-each", action="store_true",
                    help="write the envs as ONE env block with for_each over a map of the "
                         "same settings (issue 14: no slower than written out)")
    ap.add_argument("--bytecode", action="store_true",
                    help="let the CLI runs cache bytecode (in a private folder, through "
                         "PYTHONPYCACHEPREFIX) even if PYTHONDONTWRITEBYTECODE is set")
    ap.add_argument("--profile", nargs="?", const="-", metavar="FILE",
                    help="cProfile one warm in-process plan; print the top functions "
                         "(and keep the stats in FILE if given)")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    ap.add_argument("--_cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_profile_out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._worker:
        os.environ["XDG_CACHE_HOME"] = str(Path(args._worker) / ".cache")
        worker(Path(args._worker), args._cold, args._profile_out)
        return

    tmp = None
    if args.dir:
        d = Path(args.dir).absolute()
    else:
        tmp = tempfile.mkdtemp(prefix="rhplan-bench-")
        d = Path(tmp)
    try:
        sys.exit(run(d, args))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def run(d: Path, args: argparse.Namespace) -> int:
    # the parse cache of this run only, so "cold" really is cold (CLI runs inherit it)
    os.environ["XDG_CACHE_HOME"] = str(d / ".cache")
    print(f"rhplan plan-at-scale benchmark  (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    print(f"dir: {d}")
    g = generate(d, args.envs, args.clusters, for_each=args.for_each)
    if args.for_each:
        print("envs written as one block: env \"e\" { for_each = local.envs ... }")
    print(f"generated {g['files']} .hcl files, {g['lines']:,} lines, {g['bytes']:,} bytes: "
          f"{g['clusters']} clusters, {g['envs']:,} envs, 1 secret, 1 package "
          f"({g['clusters'] + g['envs'] + g['other_blocks']:,} resources), 4 variables, "
          "locals, 2 outputs")

    # state building runs in this process; measurement in a fresh one
    s = build_state(d)
    print(f"recorded state: {s['creates']:,} resources, {s['state_bytes']:,} bytes "
          f"(first plan vs empty state: parse {s['initial_parse_s']:.2f}s, plan "
          f"{s['initial_plan_s']:.2f}s, render {s['initial_render_s']:.2f}s for "
          f"{s['render_lines']:,} lines; one LocalBackend.write {s['state_write_s']:.3f}s)")

    profile_file = None
    if args.profile:
        profile_file = (args.profile if args.profile != "-" else
                        str(Path(tempfile.gettempdir()) / f"plan_scale.{os.getpid()}.prof"))
    first = run_worker(d, cold=True)
    warm_workers = [run_worker(d, cold=False) for _ in range(args.repeat)]
    if profile_file:
        run_worker(d, cold=False, profile=profile_file)  # not timed: cProfile slows it
    r = {"resources": first["resources"], "imports": first["imports"],
         "cold": first["timings"], "warm": [w["timings"] for w in warm_workers],
         "rss_cold_kb": first["rss_kb"], "rss_kb": max(w["rss_kb"] for w in warm_workers)}
    warm = {k: statistics.median(w[k] for w in r["warm"]) for k in PHASES + ("total",)}

    # CLI: cold (cache emptied) once, warm `repeat` times
    if args.bytecode:  # a user's usual set-up: modules compiled once, then read
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(d / ".pycache")
        run_cli(d)  # compiles what `rhplan plan` imports, before anything is timed
        CLI_CPU.clear()
    shutil.rmtree(d / ".cache", ignore_errors=True)
    cli_cold, rc, out, cli_rss = run_cli(d)
    if rc != 0:
        print(f"FAIL: `rhplan plan -detailed-exitcode` exited {rc} (0 = no changes):\n"
              f"{out[:2000]}")
        return 2
    cli_warm_runs = []
    for _ in range(args.repeat):
        t, rc, out, rss = run_cli(d)
        if rc != 0:
            print(f"FAIL: warm `rhplan plan` exited {rc}:\n{out[:2000]}")
            return 2
        cli_warm_runs.append(t)
        cli_rss = max(cli_rss, rss)
    cli_warm = statistics.median(cli_warm_runs)
    cpu_cold, cpu_warm = CLI_CPU[0], statistics.median(CLI_CPU[1:])

    n = r["resources"]
    print()
    print(f"no-change plan of {n:,} resources (seconds; warm = median of {args.repeat})")
    print(f"  {'phase':<34}{'cold':>9}{'warm':>9}")
    names = {
        "parse": "parse   load_config",
        "vars": "vars    resolve_variables",
        "state": "state   LocalBackend.read",
        "graph": "graph   build_graph",
        "diff": "diff    Planner().plan",
        "render": "render  render_plan",
    }
    for ph in PHASES:
        print(f"  {names[ph]:<34}{r['cold'][ph]:>9.3f}{warm[ph]:>9.3f}")
    print(f"  {'total in-process':<34}{r['cold']['total']:>9.3f}{warm['total']:>9.3f}")
    print(f"  {'CLI rhplan plan (end to end)':<34}{cli_cold:>9.3f}{cli_warm:>9.3f}")
    print(f"  {'  its CPU time (user + system)':<34}{cpu_cold:>9.3f}{cpu_warm:>9.3f}")
    print(f"  (rhplan imports in the worker: {r['imports']:.3f}s; warm totals: "
          + ", ".join(f"{w['total']:.3f}" for w in r["warm"])
          + "; CLI warm runs: " + ", ".join(f"{t:.3f}" for t in cli_warm_runs) + ")")
    print(f"peak RSS: in-process {r['rss_kb'] / 1024:.0f} MiB warm, "
          f"{r['rss_cold_kb'] / 1024:.0f} MiB cold; CLI {cli_rss / 1024:.0f} MiB")
    print()
    checks = [
        (f"warm no-change in-process plan of {n:,} resources", warm["total"], TARGET_SECONDS),
        ("warm `rhplan plan` through the CLI (process start to exit)", cli_warm,
         TARGET_SECONDS),
        ("cold `rhplan plan` through the CLI (empty parse cache)", cli_cold,
         COLD_TARGET_SECONDS),
    ]
    for what, seconds, target in checks:
        print(f"{'PASS' if seconds <= target else 'FAIL'}: {what} took {seconds:.3f}s "
              f"(target <= {target:.1f}s)")
    ok = all(seconds <= target for _, seconds, target in checks)
    if args.bytecode:
        print("(--bytecode: the CLI runs read bytecode cached in a private folder)")
    elif sys.flags.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("(PYTHONDONTWRITEBYTECODE is set: every CLI run compiles the modules it imports)")

    if profile_file:
        import pstats
        print()
        print("cProfile of one warm in-process plan (top 25 by own time):")
        st = pstats.Stats(profile_file)
        st.sort_stats("tottime").print_stats(25)
        print("(top 25 by cumulative time):")
        st.sort_stats("cumulative").print_stats(25)
        if args.profile == "-":
            os.unlink(profile_file)
    return 0 if ok else 1


if __name__ == "__main__":
    main()
