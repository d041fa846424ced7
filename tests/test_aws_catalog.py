"""The AWS instance-type catalog: shorthand resolution, error messages, resize rules, costs
and the sanity of the shipped table. Pure functions over a literal table: no AWS, no network."""
from __future__ import annotations

import pytest
from rhplan_aws import catalog
from rhplan_aws.catalog import (
    TYPES,
    InstanceType,
    UnknownInstanceType,
    hourly_cost,
    resize_in_place,
    resolve,
)

from rhplan.errors import RhplanError


def _cheapest_by_hand(pred) -> str:
    matches = [t for t in TYPES.values() if pred(t)]
    return min(matches, key=lambda t: (t.price_per_hour, t.name)).name


# --- shorthand ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("A10G:1", "g5.xlarge"),
        ("A10G:4", "g5.12xlarge"),
        ("A10G:8", "g5.48xlarge"),
        ("A100:8", "p4d.24xlarge"),
        ("A100-80GB:8", "p4de.24xlarge"),
        ("T4:1", "g4dn.xlarge"),
        ("T4:4", "g4dn.12xlarge"),
        ("V100:1", "p3.2xlarge"),
        ("V100:4", "p3.8xlarge"),
        ("V100:8", "p3.16xlarge"),
        ("H100:8", "p5.48xlarge"),
        ("L4:1", "g6.xlarge"),
        ("L4:4", "g6.12xlarge"),
        ("L4:8", "g6.48xlarge"),
    ],
)
def test_accelerator_shorthand(spec: str, expected: str) -> None:
    assert resolve(spec).name == expected


def test_accelerator_alone_means_one() -> None:
    assert resolve("A10G") == resolve("A10G:1") == TYPES["g5.xlarge"]
    assert resolve("T4").name == "g4dn.xlarge"


def test_accelerator_at_least() -> None:
    assert resolve("T4:2+").name == "g4dn.12xlarge"  # no 2- or 3-T4 type: the 4-T4 one
    assert resolve("A10G:1+").name == "g5.xlarge"  # the cheapest of all A10G types
    assert resolve("A100:1+").name == "p4d.24xlarge"
    assert resolve("L4:5+").name == "g6.48xlarge"


@pytest.mark.parametrize("spec", ["a10g:1", "A10g:1", "a100-80gb:8", "h100:8", "l4", " T4:1 "])
def test_accelerator_names_are_case_insensitive(spec: str) -> None:
    assert resolve(spec) == resolve(spec.strip().upper())


def test_cpu_at_least_two_is_the_cheapest_non_gpu_type() -> None:
    # burstable t3 types are skipped by shorthand (a t3.micro's 1 GiB cannot hold Ray)
    expected = _cheapest_by_hand(lambda t: t.gpus == 0 and t.vcpus >= 2
                                 and not t.name.startswith("t"))
    assert resolve("CPU:2+").name == expected
    assert resolve("CPU:2+", arch="x86_64").name == "c5.large"
    assert resolve("CPU:2+,1").name == "t3.micro"  # a memory part opts back in


def test_cpu_exact() -> None:
    t = resolve("CPU:4")
    assert t.vcpus == 4 and t.gpus == 0
    assert t.name == _cheapest_by_hand(lambda t: t.gpus == 0 and t.vcpus == 4)
    assert resolve("CPU:16").vcpus == 16
    assert resolve("cpu:8").vcpus == 8


def test_cpu_at_least_never_picks_a_gpu_type() -> None:
    # the GPU types have 4..192 vCPUs; a CPU shorthand must still skip them all
    for n in (4, 48, 96, 128):
        assert resolve(f"CPU:{n}+").gpus == 0
    assert resolve("CPU:129+").name == "m7i.48xlarge"


def test_cpu_with_memory() -> None:
    t = resolve("CPU:4+,16+")
    assert t.vcpus >= 4 and t.memory_gib >= 16 and t.gpus == 0
    assert t.name == _cheapest_by_hand(
        lambda t: t.gpus == 0 and t.vcpus >= 4 and t.memory_gib >= 16)
    assert resolve("CPU:2,16").name == "r5.large"  # exactly 2 vCPUs and 16 GiB: r5/r6i tie
    assert resolve("CPU:2+,100+").memory_gib >= 100


def test_arch_restricts_shorthand() -> None:
    assert resolve("CPU:4").arch == "arm64"  # Graviton is cheapest at 4 vCPUs
    x86 = resolve("CPU:4", arch="x86_64")
    assert x86.arch == "x86_64"
    assert x86.name == _cheapest_by_hand(
        lambda t: t.gpus == 0 and t.vcpus == 4 and t.arch == "x86_64"
        and not t.name.startswith("t"))
    assert resolve("CPU:2+", arch="arm64").name == "c7g.large"
    assert resolve("m7g.large", arch="x86_64").name == "m7g.large"  # real names pass through
    with pytest.raises(UnknownInstanceType, match="no arm64 instance type .* A10G"):
        resolve("A10G:1", arch="arm64")
    with pytest.raises(ValueError, match="arch must be one of"):
        resolve("CPU:2", arch="aarch64")


# --- real names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TYPES))
def test_every_real_name_resolves_to_itself(name: str) -> None:
    assert resolve(name) is TYPES[name]


def test_real_names_are_case_insensitive_and_stripped() -> None:
    assert resolve("M6I.Large") is TYPES["m6i.large"]
    assert resolve("  g5.XLARGE ") is TYPES["g5.xlarge"]


# --- errors ------------------------------------------------------------------------------


def _error(spec: str) -> str:
    with pytest.raises(UnknownInstanceType) as info:
        resolve(spec)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and len(message) < 400
    assert spec.strip() in message or not spec.strip()  # always says what was written
    return message


def test_unknown_real_name_suggests_close_matches_and_shorthand() -> None:
    message = _error("m9x.large")
    assert "not in rhplan's AWS catalog" in message
    assert "did you mean" in message and "m5.large" in message
    assert "CPU:N+" in message and "A10G:1" in message


def test_unknown_real_name_without_close_matches() -> None:
    message = _error("zzz.qqq")
    assert "did you mean" not in message
    assert "use a listed type or a shorthand" in message


def test_typo_in_a_real_size() -> None:
    assert "g5.xlarge" in _error("g5.xlarg")


def test_bad_cpu_count() -> None:
    for spec in ("CPU:abc", "CPU:", "CPU", "CPU:0", "CPU:2++", "CPU:-1"):
        message = _error(spec)
        assert "CPU:2+" in message and "number of vCPUs" in message


def test_cpu_count_that_no_type_has() -> None:
    message = _error("CPU:3")
    assert "3 vCPUs" in message and "2, 4, 8" in message
    assert "CPU:3+" in message  # says the form that would work
    assert "1 vCPU " in _error("CPU:1")
    message = _error("CPU:500+")
    assert "500+ vCPUs" in message and "CPU:500+ for" not in message


def test_cpu_memory_that_no_type_has() -> None:
    message = _error("CPU:4+,5000+")
    assert "5000+ GiB" in message and "at most 768 GiB (m7i.48xlarge)" in message


def test_unknown_accelerator_lists_what_exists() -> None:
    message = _error("FOO:1")
    assert "unknown accelerator 'FOO'" in message
    for gpu in ("A100", "A100-80GB", "A10G", "H100", "L4", "T4", "V100"):
        assert gpu in message
    assert "CPU:N" in message


def test_near_miss_accelerator_is_suggested() -> None:
    assert "did you mean A10G" in _error("A10:1")
    assert "did you mean" in _error("h10")


def test_accelerator_count_that_no_type_has() -> None:
    message = _error("A100:3")
    assert "exactly 3 A100 GPUs" in message
    assert "A100 comes in 8 per instance (p4d.24xlarge)" in message
    assert "A100:3+" in message
    message = _error("A10G:3")
    assert "A10G comes in 1 (g5.xlarge), 4 (g5.12xlarge) or 8 (g5.48xlarge) per instance" in (
        message)
    assert "exactly 1 H100 GPU " in _error("H100:1")


def test_accelerator_at_least_more_than_any_type() -> None:
    message = _error("A100:9+")
    assert "at least 9 A100 GPUs" in message and "8 per instance" in message
    assert "A100:9+ for" not in message  # no point suggesting what just failed


def test_bad_accelerator_count() -> None:
    for spec in ("A100:abc", "A100:0", "A100:", "T4:1.5"):
        message = _error(spec)
        assert "number of GPUs" in message


def test_family_without_size() -> None:
    message = _error("m6i")
    assert "is a family" in message and "m6i.large" in message


def test_empty() -> None:
    assert "instance_type is empty" in _error("")
    assert "instance_type is empty" in _error("   ")


def test_error_is_a_value_error_and_a_user_error() -> None:
    with pytest.raises(ValueError):
        resolve("nope.nope")
    with pytest.raises(RhplanError):
        resolve("nope.nope")


# --- cheapest wins, deterministically ----------------------------------------------------


def _t(name: str, price: float, vcpus: int = 2, gpus: int = 0, gpu: str | None = None,
       arch: str = "x86_64") -> InstanceType:
    return InstanceType(name, vcpus, 8.0, gpus, gpu, price, arch)


def test_cheaper_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    table = [_t("b.large", 0.10), _t("a.large", 0.20), _t("c.large", 0.05, vcpus=4)]
    monkeypatch.setattr(catalog, "TYPES", {t.name: t for t in table})
    assert resolve("CPU:2").name == "b.large"
    assert resolve("CPU:2+").name == "c.large"


@pytest.mark.parametrize("reverse", [False, True])
def test_ties_are_broken_by_name_whatever_the_table_order(
        monkeypatch: pytest.MonkeyPatch, reverse: bool) -> None:
    table = [_t("zz.large", 0.10), _t("aa.large", 0.10), _t("mm.large", 0.10),
             _t("g.x", 1.0, gpus=1, gpu="T4"), _t("f.x", 1.0, gpus=1, gpu="T4")]
    if reverse:
        table.reverse()
    monkeypatch.setattr(catalog, "TYPES", {t.name: t for t in table})
    assert resolve("CPU:2").name == "aa.large"
    assert resolve("T4:1").name == "f.x"


def test_real_table_ties_resolve_by_name() -> None:
    # m5.large and m6i.large cost the same; so do r5.large and r6i.large
    assert TYPES["r5.large"].price_per_hour == TYPES["r6i.large"].price_per_hour
    assert resolve("CPU:2,16").name == "r5.large"
    assert [resolve("CPU:2,16").name for _ in range(5)] == ["r5.large"] * 5


# --- resize ------------------------------------------------------------------------------


def test_resize_same_family_and_arch_is_in_place() -> None:
    assert resize_in_place(TYPES["m6i.large"], TYPES["m6i.2xlarge"]) is None
    assert resize_in_place(TYPES["m6i.large"], TYPES["c7i.xlarge"]) is None
    assert resize_in_place(TYPES["m7g.large"], TYPES["c7g.4xlarge"]) is None
    assert resize_in_place(TYPES["t3.micro"], TYPES["t3.micro"]) is None


def test_resize_same_gpu_model_is_in_place() -> None:
    assert resize_in_place(TYPES["g5.xlarge"], TYPES["g5.12xlarge"]) is None
    assert resize_in_place(TYPES["g4dn.xlarge"], TYPES["g4dn.2xlarge"]) is None


def test_resize_across_arch_is_not_in_place() -> None:
    reason = resize_in_place(TYPES["m6i.large"], TYPES["m7g.large"])
    assert reason == ("m6i.large is x86_64 and m7g.large is arm64: "
                      "the image cannot run on both")
    assert "arm64" in (resize_in_place(TYPES["c7g.large"], TYPES["c7i.large"]) or "")


def test_resize_into_or_out_of_gpus_is_not_in_place() -> None:
    into = resize_in_place(TYPES["m6i.large"], TYPES["g5.xlarge"])
    assert into is not None and "no GPU" in into and "A10G" in into and "driver" in into
    out = resize_in_place(TYPES["g5.xlarge"], TYPES["m6i.large"])
    assert out is not None and "A10G" in out and "m6i.large has none" in out


def test_resize_between_gpu_models_is_not_in_place() -> None:
    reason = resize_in_place(TYPES["g4dn.xlarge"], TYPES["g5.xlarge"])
    assert reason is not None
    assert "T4" in reason and "A10G" in reason and "driver" in reason
    assert resize_in_place(TYPES["p4d.24xlarge"], TYPES["p4de.24xlarge"]) is not None


def test_resize_reasons_are_one_line() -> None:
    types = list(TYPES.values())
    for old in types:
        for new in types:
            reason = resize_in_place(old, new)
            assert reason is None or ("\n" not in reason and old.name in reason)


# --- cost --------------------------------------------------------------------------------


def test_hourly_cost() -> None:
    assert hourly_cost(TYPES["m6i.large"], 3) == 0.288
    assert hourly_cost(TYPES["p4d.24xlarge"], 2) == 65.5452
    assert hourly_cost(TYPES["c7i.large"], 2) == 0.1785
    assert hourly_cost(TYPES["m7i.48xlarge"], 3) == 29.0304
    assert hourly_cost(TYPES["t3.micro"], 0) == 0.0
    assert hourly_cost(_t("x.y", 0.1), 3) == 0.3  # no float noise (0.30000000000000004)


def test_hourly_cost_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="count"):
        hourly_cost(TYPES["m6i.large"], -1)


# --- table sanity ------------------------------------------------------------------------


def test_table_size_and_keys() -> None:
    assert 40 <= len(TYPES) <= 80
    for name, t in TYPES.items():
        assert t.name == name == name.lower() and "." in name


@pytest.mark.parametrize("t", list(TYPES.values()), ids=lambda t: t.name)
def test_table_entry_is_sane(t: InstanceType) -> None:
    assert isinstance(t.price_per_hour, float) and t.price_per_hour > 0
    assert t.arch in ("x86_64", "arm64")
    assert t.vcpus > 0 and t.memory_gib > 0 and t.gpus >= 0
    assert (t.gpu is not None) == (t.gpus > 0)
    assert t.gpu is None or (t.gpu == t.gpu.upper() and ":" not in t.gpu)
    if t.gpus:
        assert t.arch == "x86_64"


def test_bigger_sizes_of_a_family_cost_more() -> None:
    families: dict[str, list[InstanceType]] = {}
    for t in TYPES.values():
        families.setdefault(t.name.split(".")[0], []).append(t)
    for members in families.values():
        by_vcpus = sorted(members, key=lambda t: (t.vcpus, t.memory_gib))
        prices = [t.price_per_hour for t in by_vcpus]
        assert prices == sorted(prices), [t.name for t in by_vcpus]


def test_table_covers_the_named_families() -> None:
    for name in ("t3.micro", "t3.2xlarge", "m5.large", "m6i.large", "m7i.large", "c5.large",
                 "c6i.large", "c7i.large", "r5.large", "r6i.large", "m6g.large", "m7g.large",
                 "c7g.large", "g4dn.xlarge", "g4dn.2xlarge", "g4dn.12xlarge", "g5.xlarge",
                 "g5.2xlarge", "g5.12xlarge", "g5.48xlarge", "g6.xlarge", "g6.12xlarge",
                 "g6.48xlarge", "p3.2xlarge", "p3.8xlarge", "p3.16xlarge", "p4d.24xlarge",
                 "p4de.24xlarge", "p5.48xlarge"):
        assert name in TYPES
    assert {t.arch for t in TYPES.values()} == {"x86_64", "arm64"}
