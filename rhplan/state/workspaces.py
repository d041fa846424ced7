"""Workspaces, as Terraform has them: one configuration, several named states.

The workspace in use is RHPLAN_WORKSPACE (or Terraform's TF_WORKSPACE) when set, else
the one `rhplan workspace select` wrote to .rhplan/environment, else "default". The
default workspace's state is where the backend says; another workspace's state is
  local: rhplan.state.d/NAME/rhplan.state.json beside the configuration
  s3:    env:/NAME/KEY in the same bucket (Terraform's workspace_key_prefix "env:")
so a configuration moved from Terraform keeps its layout.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from rhplan.errors import RhplanError

DEFAULT = "default"
ENVIRONMENT_FILE = Path(".rhplan") / "environment"
OVERRIDES = ("RHPLAN_WORKSPACE", "TF_WORKSPACE")  # the first set wins
LOCAL_DIR = "rhplan.state.d"
LOCAL_FILE = "rhplan.state.json"
S3_PREFIX = "env:"

# URL-safe and no path separators (Terraform's rule), and never "." or ".."
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.~-]{0,89}")


def check_name(name: str, where: str = "") -> str:
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise RhplanError(f"{where}the workspace name {shown!r} is not allowed; use letters, "
                          "digits, _, ., ~ and - (no / or spaces, at most 90 characters)")
    return name


def overridden() -> str | None:
    """The variable that picks the workspace for this run, if one is set."""
    return next((v for v in OVERRIDES if os.environ.get(v)), None)


def current(config_dir: Path) -> str:
    """The workspace this run uses."""
    var = overridden()
    if var:
        return check_name(os.environ[var], f"{var}: ")
    path = Path(config_dir) / ENVIRONMENT_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return DEFAULT
    except (OSError, UnicodeDecodeError) as exc:
        raise RhplanError(f"{path}: cannot read the selected workspace "
                          f"({getattr(exc, 'strerror', None) or exc}); run rhplan workspace "
                          "select NAME") from None
    return check_name(text, f"{path}: ") if text else DEFAULT


def select(config_dir: Path, name: str) -> None:
    """Record NAME as the selected workspace (.rhplan/environment)."""
    path = Path(config_dir) / ENVIRONMENT_FILE
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".environment.{os.getpid()}.tmp")
    tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(tmp, path)


def local_state_path(config_dir: Path, default_path: Path, name: str,
                     workspace_dir: str = LOCAL_DIR) -> Path:
    if name == DEFAULT:
        return default_path
    return Path(config_dir) / workspace_dir / name / LOCAL_FILE


def local_names(config_dir: Path, workspace_dir: str = LOCAL_DIR) -> list[str]:
    """Workspaces of the local backend: default, and each folder of rhplan.state.d
    (the backend's workspace_dir)."""
    base = Path(config_dir) / workspace_dir
    found = sorted(p.name for p in base.iterdir() if p.is_dir() and _NAME.fullmatch(p.name)
                   and p.name != DEFAULT) if base.is_dir() else []
    return [DEFAULT, *found]


def s3_key(key: str, name: str, prefix: str = S3_PREFIX) -> str:
    return key if name == DEFAULT else f"{prefix}/{name}/{key}"


def s3_names(keys: list[str], key: str, prefix: str = S3_PREFIX) -> list[str]:
    """Workspaces of the S3 backend, from the object keys under PREFIX/ (env:/)."""
    found = set()
    for k in keys:
        rest = k[len(prefix) + 1:]
        name, _, tail = rest.partition("/")
        if tail == key and _NAME.fullmatch(name) and name != DEFAULT:
            found.add(name)
    return [DEFAULT, *sorted(found)]
