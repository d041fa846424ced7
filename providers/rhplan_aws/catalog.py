"""The EC2 instance types the `aws` provider knows, and how `instance_type` resolves to one.

A cluster's `instance_type` is either a real EC2 type (`m6i.large`) or Runhouse/SkyPilot
shorthand:

- `CPU:N` / `CPU:N+`: the cheapest type without a GPU with exactly / at least N vCPUs;
  an optional memory part in GiB, `CPU:4+,16+` (at least 16) or `CPU:4,16` (exactly 16).
- `GPU:N` / `GPU:N+` / `GPU` (= `GPU:1`), e.g. `A10G:1`, `A100:8`, `T4:4+`: the cheapest type
  with exactly / at least N of that GPU model. GPU names are case-insensitive.

"Cheapest" is by the on-demand price in TYPES; equal prices go to the name that sorts first,
so the same spec always gives the same type.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from rhplan.plugin import RhplanError

ARCHES = ("x86_64", "arm64")


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu: str | None  # GPU model, as written in shorthand ("A10G"); None without GPUs
    price_per_hour: float  # USD, on-demand
    arch: str  # "x86_64" or "arm64"


class UnknownInstanceType(RhplanError, ValueError):
    """An `instance_type` that names no type in TYPES; str(exc) is one line for a user."""


# AWS on-demand Linux prices in us-east-1 (USD per hour), from the EC2 on-demand price list as
# published in 2024. They are estimates for plans: AWS changes prices (P4/P5 were cut in 2025)
# and other regions differ. A type missing here can still be added: one row each.
#  name              vCPUs  GiB    GPUs GPU model    $/hour    arch
_TABLE: tuple[tuple[str, int, float, int, str | None, float, str], ...] = (
    # burstable
    ("t3.micro",          2,    1,    0, None,        0.0104,  "x86_64"),
    ("t3.small",          2,    2,    0, None,        0.0208,  "x86_64"),
    ("t3.medium",         2,    4,    0, None,        0.0416,  "x86_64"),
    ("t3.large",          2,    8,    0, None,        0.0832,  "x86_64"),
    ("t3.xlarge",         4,   16,    0, None,        0.1664,  "x86_64"),
    ("t3.2xlarge",        8,   32,    0, None,        0.3328,  "x86_64"),
    # general purpose
    ("m5.large",          2,    8,    0, None,        0.096,   "x86_64"),
    ("m5.xlarge",         4,   16,    0, None,        0.192,   "x86_64"),
    ("m5.2xlarge",        8,   32,    0, None,        0.384,   "x86_64"),
    ("m6i.large",         2,    8,    0, None,        0.096,   "x86_64"),
    ("m6i.xlarge",        4,   16,    0, None,        0.192,   "x86_64"),
    ("m6i.2xlarge",       8,   32,    0, None,        0.384,   "x86_64"),
    ("m6i.4xlarge",      16,   64,    0, None,        0.768,   "x86_64"),
    ("m6i.8xlarge",      32,  128,    0, None,        1.536,   "x86_64"),
    ("m6i.32xlarge",    128,  512,    0, None,        6.144,   "x86_64"),
    ("m7i.large",         2,    8,    0, None,        0.1008,  "x86_64"),
    ("m7i.xlarge",        4,   16,    0, None,        0.2016,  "x86_64"),
    ("m7i.2xlarge",       8,   32,    0, None,        0.4032,  "x86_64"),
    ("m7i.4xlarge",      16,   64,    0, None,        0.8064,  "x86_64"),
    ("m7i.48xlarge",    192,  768,    0, None,        9.6768,  "x86_64"),
    ("m6g.large",         2,    8,    0, None,        0.077,   "arm64"),
    ("m6g.xlarge",        4,   16,    0, None,        0.154,   "arm64"),
    ("m6g.2xlarge",       8,   32,    0, None,        0.308,   "arm64"),
    ("m7g.large",         2,    8,    0, None,        0.0816,  "arm64"),
    ("m7g.xlarge",        4,   16,    0, None,        0.1632,  "arm64"),
    ("m7g.2xlarge",       8,   32,    0, None,        0.3264,  "arm64"),
    ("m7g.4xlarge",      16,   64,    0, None,        0.6528,  "arm64"),
    # compute optimized
    ("c5.large",          2,    4,    0, None,        0.085,   "x86_64"),
    ("c5.xlarge",         4,    8,    0, None,        0.17,    "x86_64"),
    ("c5.2xlarge",        8,   16,    0, None,        0.34,    "x86_64"),
    ("c6i.large",         2,    4,    0, None,        0.085,   "x86_64"),
    ("c6i.xlarge",        4,    8,    0, None,        0.17,    "x86_64"),
    ("c6i.2xlarge",       8,   16,    0, None,        0.34,    "x86_64"),
    ("c6i.4xlarge",      16,   32,    0, None,        0.68,    "x86_64"),
    ("c7i.large",         2,    4,    0, None,        0.08925, "x86_64"),
    ("c7i.xlarge",        4,    8,    0, None,        0.1785,  "x86_64"),
    ("c7i.2xlarge",       8,   16,    0, None,        0.357,   "x86_64"),
    ("c7i.4xlarge",      16,   32,    0, None,        0.714,   "x86_64"),
    ("c7g.large",         2,    4,    0, None,        0.0725,  "arm64"),
    ("c7g.xlarge",        4,    8,    0, None,        0.145,   "arm64"),
    ("c7g.2xlarge",       8,   16,    0, None,        0.29,    "arm64"),
    ("c7g.4xlarge",      16,   32,    0, None,        0.58,    "arm64"),
    # memory optimized
    ("r5.large",          2,   16,    0, None,        0.126,   "x86_64"),
    ("r5.xlarge",         4,   32,    0, None,        0.252,   "x86_64"),
    ("r5.2xlarge",        8,   64,    0, None,        0.504,   "x86_64"),
    ("r6i.large",         2,   16,    0, None,        0.126,   "x86_64"),
    ("r6i.xlarge",        4,   32,    0, None,        0.252,   "x86_64"),
    ("r6i.2xlarge",       8,   64,    0, None,        0.504,   "x86_64"),
    ("r6i.4xlarge",      16,  128,    0, None,        1.008,   "x86_64"),
    # GPU
    ("g4dn.xlarge",       4,   16,    1, "T4",        0.526,   "x86_64"),
    ("g4dn.2xlarge",      8,   32,    1, "T4",        0.752,   "x86_64"),
    ("g4dn.12xlarge",    48,  192,    4, "T4",        3.912,   "x86_64"),
    ("g5.xlarge",         4,   16,    1, "A10G",      1.006,   "x86_64"),
    ("g5.2xlarge",        8,   32,    1, "A10G",      1.212,   "x86_64"),
    ("g5.12xlarge",      48,  192,    4, "A10G",      5.672,   "x86_64"),
    ("g5.48xlarge",     192,  768,    8, "A10G",     16.288,   "x86_64"),
    ("g6.xlarge",         4,   16,    1, "L4",        0.8048,  "x86_64"),
    ("g6.12xlarge",      48,  192,    4, "L4",        4.6016,  "x86_64"),
    ("g6.48xlarge",     192,  768,    8, "L4",       13.3504,  "x86_64"),
    ("p3.2xlarge",        8,   61,    1, "V100",      3.06,    "x86_64"),
    ("p3.8xlarge",       32,  244,    4, "V100",     12.24,    "x86_64"),
    ("p3.16xlarge",      64,  488,    8, "V100",     24.48,    "x86_64"),
    ("p4d.24xlarge",     96, 1152,    8, "A100",     32.7726,  "x86_64"),
    ("p4de.24xlarge",    96, 1152,    8, "A100-80GB", 40.9657, "x86_64"),
    ("p5.48xlarge",     192, 2048,    8, "H100",     98.32,    "x86_64"),
)  # fmt: skip

TYPES: dict[str, InstanceType] = {row[0]: InstanceType(*row) for row in _TABLE}

_SHORTHAND_HELP = "CPU:N or CPU:N+ (vCPUs, no GPU) or GPU:N such as A10G:1, A100:8, T4:4+"
_COUNT = r"(\d+)(\+?)"
_GPU_COUNT = re.compile(_COUNT)
_CPU_COUNT = re.compile(rf"{_COUNT}(?:,(\d+(?:\.\d+)?)(\+?))?")


def resolve(spec: str, *, arch: str | None = None) -> InstanceType:
    """The instance type `spec` names: a real EC2 type in TYPES, or the cheapest match for a
    shorthand. `arch` ("x86_64"/"arm64") restricts shorthand to types that run that image;
    a real name is returned as is."""
    if arch is not None and arch not in ARCHES:
        raise ValueError(f"arch must be one of {', '.join(ARCHES)}, not {arch!r}")
    text = spec.strip()
    if not text:
        raise UnknownInstanceType(f"instance_type is empty: write an EC2 type such as "
                                  f"m6i.large, or {_SHORTHAND_HELP}")
    if ":" not in text and "." in text:
        return _real(text)
    name, _, count = text.partition(":")
    if name.upper() == "CPU":
        return _cpu(text, count, arch)
    return _gpu(text, name, count if ":" in text else None, arch)


def resize_in_place(old: InstanceType, new: InstanceType) -> str | None:
    """None if EC2 can stop the instance, change its type and start it again with the same
    root volume; otherwise why not (the cluster must be replaced)."""
    if old.name == new.name:
        return None
    if old.arch != new.arch:
        return (f"{old.name} is {old.arch} and {new.name} is {new.arch}: "
                f"the image cannot run on both")
    if old.gpu is None and new.gpu is not None:
        return (f"{old.name} has no GPU and {new.name} has {new.gpu} GPUs: "
                f"the image needs GPU drivers it was not built with")
    if old.gpu is not None and new.gpu is None:
        return (f"{old.name} has {old.gpu} GPUs and {new.name} has none: "
                f"a GPU image does not move to a type without GPUs")
    if old.gpu != new.gpu:
        return (f"{old.name} has {old.gpu} GPUs and {new.name} has {new.gpu} GPUs: "
                f"they need a different GPU driver image")
    return None


def hourly_cost(t: InstanceType, count: int) -> float:
    """On-demand cost of `count` instances of `t`, USD per hour, rounded to 4 decimals."""
    if count < 0:
        raise ValueError(f"count must be 0 or more, not {count}")
    return round(t.price_per_hour * count, 4)


# --- resolution -------------------------------------------------------------------------


def _cheapest(types: Iterable[InstanceType]) -> InstanceType | None:
    return min(types, key=lambda t: (t.price_per_hour, t.name), default=None)


def _real(text: str) -> InstanceType:
    name = text.lower()
    if name in TYPES:
        return TYPES[name]
    close = difflib.get_close_matches(name, sorted(TYPES), n=3, cutoff=0.6)
    hint = f": did you mean {', '.join(close)}? Or use" if close else "; use a listed type or"
    raise UnknownInstanceType(
        f"instance type {text!r} is not in rhplan's AWS catalog{hint} "
        f"a shorthand: {_SHORTHAND_HELP}")


def _fmt_count(n: int, plus: bool) -> str:
    return f"{n}+" if plus else str(n)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _arch_words(arch: str | None) -> str:
    return f" {arch}" if arch else ""


def _cpu(text: str, count: str, arch: str | None) -> InstanceType:
    m = _CPU_COUNT.fullmatch(count.strip())
    if not m or int(m.group(1)) < 1:
        raise UnknownInstanceType(
            f"bad instance_type {text!r}: after 'CPU:' write a number of vCPUs of 1 or more, "
            f"optionally with + and a memory part in GiB: CPU:2, CPU:2+, CPU:4+,16+")
    vcpus, vplus = int(m.group(1)), bool(m.group(2))
    mem = float(m.group(3)) if m.group(3) else None
    mplus = bool(m.group(4))
    pool = [t for t in TYPES.values() if t.gpus == 0 and (arch is None or t.arch == arch)]
    if mem is None:
        # as SkyPilot does: shorthand skips burstable types (t3: throttled CPU credits, a
        # micro's 1 GiB cannot even hold Ray); write the exact name to get one
        pool = [t for t in pool if not t.name.startswith("t")] or pool
    found = _cheapest(
        t for t in pool
        if (t.vcpus >= vcpus if vplus else t.vcpus == vcpus)
        and (mem is None or (t.memory_gib >= mem if mplus else t.memory_gib == mem)))
    if found:
        return found
    wanted = f"{_fmt_count(vcpus, vplus)} vCPU{'' if vcpus == 1 and not vplus else 's'}"
    if mem is not None:
        wanted += f" and {mem:g}{'+' if mplus else ''} GiB of memory"
    sizes = sorted({t.vcpus for t in pool})
    message = (f"no{_arch_words(arch)} instance type without a GPU has {wanted} "
               f"(instance_type {text!r}): they come with {_join([str(s) for s in sizes])} "
               f"vCPUs")
    if mem is not None:
        biggest = max(pool, key=lambda t: (t.memory_gib, t.name))
        message += f", at most {biggest.memory_gib:g} GiB ({biggest.name})"
    if not vplus and mem is None and any(s > vcpus for s in sizes):
        message += f"; write CPU:{vcpus}+ for the cheapest with at least {vcpus}"
    raise UnknownInstanceType(message)


def _gpu_models() -> dict[str, str]:
    """Upper-cased GPU model -> the model as TYPES writes it."""
    return {t.gpu.upper(): t.gpu for t in TYPES.values() if t.gpu is not None}


def _gpu(text: str, name: str, count: str | None, arch: str | None) -> InstanceType:
    """`count` is None for a bare model name (`A10G`), which means one GPU."""
    models = _gpu_models()
    model = models.get(name.strip().upper())
    if model is None:
        raise UnknownInstanceType(_unknown_gpu(text, name.strip(), models))
    m = _GPU_COUNT.fullmatch(count.strip()) if count is not None else None
    if count is not None and (not m or int(m.group(1)) < 1):
        raise UnknownInstanceType(
            f"bad instance_type {text!r}: after '{model}:' write a number of GPUs of 1 or "
            f"more, optionally with +: {model}:1, {model}:4+")
    gpus, plus = (int(m.group(1)), bool(m.group(2))) if m else (1, False)
    pool = [t for t in TYPES.values() if t.gpu == model and (arch is None or t.arch == arch)]
    found = _cheapest(t for t in pool if (t.gpus >= gpus if plus else t.gpus == gpus))
    if found:
        return found
    if not pool:
        raise UnknownInstanceType(
            f"no{_arch_words(arch)} instance type in rhplan's AWS catalog has {model} GPUs "
            f"(instance_type {text!r})")
    by_count: dict[int, InstanceType] = {}
    for t in sorted(pool, key=lambda t: (t.price_per_hour, t.name)):
        by_count.setdefault(t.gpus, t)
    counts = sorted(by_count)
    if len(counts) == 1:
        offer = f"{model} comes in {counts[0]} per instance ({by_count[counts[0]].name})"
    else:
        offer = (f"{model} comes in "
                 f"{_join([f'{n} ({by_count[n].name})' for n in counts])} per instance")
    exactly = "at least" if plus else "exactly"
    message = (f"no{_arch_words(arch)} instance type has {exactly} {gpus} {model} "
               f"GPU{'' if gpus == 1 else 's'} "
               f"(instance_type {text!r}): {offer}")
    if not plus and counts[-1] > gpus:
        message += f"; write {model}:{gpus}+ for the cheapest with at least {gpus}"
    raise UnknownInstanceType(message)


def _unknown_gpu(text: str, name: str, models: dict[str, str]) -> str:
    family = sorted((n for n in TYPES if n.split(".")[0] == name.lower()),
                    key=lambda n: (TYPES[n].vcpus, n))
    if family and ":" not in text:
        return (f"instance_type {text!r} is a family, not a type: add a size, "
                f"e.g. {', '.join(family[:3])}")
    close = difflib.get_close_matches(name.upper(), sorted(models), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(models[c] for c in close)}? " if close else ""
    known = ", ".join(sorted(models.values()))
    return (f"unknown accelerator {name!r} in instance_type {text!r}: {hint}"
            f"known GPUs are {known}; write NAME:N (e.g. A10G:1), CPU:N for no GPU, "
            f"or an EC2 type such as m6i.large")
