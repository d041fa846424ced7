"""The cache of parsed files (keyed by content hash, in the user's cache folder): an
edited file is parsed again, a broken or foreign cache entry is ignored, and what
comes back from the cache is the tree parsing gives."""
from __future__ import annotations

from pathlib import Path

from rhplan.config import parse
from rhplan.config.load import load_config

# an operator: python-hcl2 parses this file (the fast path leaves it), so the cache counts
TEXT = 'cluster "c" {\n  provider      = "local"\n  autostop_mins = 10 * 6\n' \
       '  autostop_command = "echo idle"\n}\n'


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pickle"))


def test_cached_tree_is_the_parsed_tree(tmp_path: Path) -> None:
    src, cache = tmp_path / "main.hcl", tmp_path / "cache"
    src.write_text(TEXT)
    first = parse.parse_file(src, "main.hcl", cache)
    assert len(entries(cache)) == 1
    again = parse.parse_file(src, "main.hcl", cache)
    assert again == first == parse.parse_text(TEXT, "main.hcl")


def test_edited_file_is_parsed_again(tmp_path: Path) -> None:
    src, cache = tmp_path / "main.hcl", tmp_path / "cache"
    src.write_text(TEXT)
    parse.parse_file(src, "main.hcl", cache)
    src.write_text(TEXT.replace("10 * 6", "10 * 7"))
    tree = parse.parse_file(src, "main.hcl", cache)
    mul = tree.body.blocks[0].attrs["autostop_mins"].expr
    assert mul.right.value == 7  # not the stale cached 6
    assert len(entries(cache)) == 2


def test_corrupt_cache_entry_is_ignored(tmp_path: Path) -> None:
    src, cache = tmp_path / "main.hcl", tmp_path / "cache"
    src.write_text(TEXT)
    parse.parse_file(src, "main.hcl", cache)
    for bad in (b"", b"not a pickle", b"\x80\x05K\x01.", entries(cache)[0].read_bytes()[:50]):
        entries(cache)[0].write_bytes(bad)
        assert parse.parse_file(src, "main.hcl", cache) == parse.parse_text(TEXT, "main.hcl")


def test_plan_through_a_corrupt_cache(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    (tmp_path / "main.hcl").write_text(TEXT)
    load_config(tmp_path)
    cache = tmp_path / "xdg" / "rhplan" / "hcl"
    for entry in entries(cache):
        entry.write_bytes(b"garbage")
    cfg = load_config(tmp_path)
    assert list(cfg.resources) == ["cluster.c", "env.c_default"]  # (its bare default env)
