"""env_file on an env: environment variables read from dotenv files while planning.

    env_file = ".env"                                   # one file
    env_file = [".env", "prod.env"]                     # several: later files win
    env_file = { path = ".env.secret", sensitive = true }
    env_file = [".env", { path = ".env.secret", sensitive = true }]

Files are parsed with python-dotenv (comments, quotes, `export`, multi-line values,
`${VAR}` expansion as dotenv does it). Relative paths start at the configuration's
folder. A line dotenv cannot parse is refused with that file's name and line.

Values of a file marked sensitive are treated as secrets: kept in memory, written to
the env's secrets.json (0600), never put in the plan or the state (those hold the keys
and a keyed digest, so a change shows as a planned update). Values of other files
are ordinary env vars, shown in the plan as env_vars are.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhplan.errors import ConfigError

FORMS = ('write env_file = ".env", a list of paths, or '
         '{ path = ".env", sensitive = true } (also inside a list)')


@dataclass(frozen=True)
class EnvFile:
    path: Path  # resolved
    sensitive: bool


@dataclass
class FileVars:
    """What an env's files hold, env_vars already taken out (they win)."""

    plain: dict[str, str] = field(default_factory=dict)
    sensitive: dict[str, str] = field(default_factory=dict)


def parse_spec(value: Any, config_dir: Path) -> list[EnvFile]:
    """The files an env_file value names, in order. ValueError says what to write."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    files: list[EnvFile] = []
    for item in items:
        sensitive = False
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"path", "sensitive"})
            if unknown or not isinstance(item.get("path"), str):
                raise ValueError(f"env_file entry {item!r} is not understood; {FORMS}")
            sensitive = item.get("sensitive", False)
            if not isinstance(sensitive, bool):
                raise ValueError(f"env_file sensitive must be true or false, not {sensitive!r}")
            item = item["path"]
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"env_file entry {item!r} is not a path; {FORMS}")
        path = Path(item).expanduser()
        if not path.is_absolute():
            path = config_dir / path
        files.append(EnvFile(path.resolve(), sensitive))
    return files


def read(files: list[EnvFile], env_vars: dict[str, Any]) -> FileVars:
    """The variables of files (later files win over earlier ones), minus the keys
    env_vars sets. ConfigError names the .env file and line of a bad line."""
    out = FileVars()
    for f in files:
        for key, value in read_one(f.path).items():
            out.plain.pop(key, None)
            out.sensitive.pop(key, None)
            (out.sensitive if f.sensitive else out.plain)[key] = value
    for key in env_vars:
        out.plain.pop(key, None)
        out.sensitive.pop(key, None)
    return out


def read_one(path: Path) -> dict[str, str]:
    """One dotenv file's variables, in file order."""
    from dotenv import dotenv_values  # only configurations with env_file pay the import
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"env_file {path} does not exist; create it or fix the path "
                          "(relative paths start at the configuration's folder)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"env_file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"env_file {path} cannot be read ({exc.strerror}); make it "
                          "readable") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            shown = binding.original.string.strip().splitlines()[0][:40]
            # the key part only: the line may hold a secret value
            shown = shown.split("=", 1)[0] + ("=..." if "=" in shown else "")
            raise ConfigError(f"cannot parse this line of a dotenv file ({shown!r}); write "
                              "KEY=value, quote values with spaces or #", str(path),
                              binding.original.line)
        if binding.key is not None and binding.value is None:
            raise ConfigError(f"{binding.key} has no value (no '='); write {binding.key}= "
                              "for an empty value, or remove the line", str(path),
                              binding.original.line)
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {k: v or "" for k, v in values.items() if k is not None}
