"""Where a configuration's state lives: the backend its `rhplan { backend "TYPE" {...} }`
block names (local file or S3), for the selected workspace or another, and the workspace
commands' own work (new, select, delete, list). What a workspace is and where each
one's state lives on disk or in a bucket: rhplan.state.workspaces."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rhplan.config.model import Config
from rhplan.errors import ConfigError, RhplanError
from rhplan.state import workspaces
from rhplan.state.backend import Backend
from rhplan.state.local import LocalBackend
from rhplan.state.model import State


def backend_for(cfg: Config, workspace: str | None = None) -> Backend:
    """The backend the configuration's `rhplan { backend "TYPE" { ... } }` block names,
    holding the state of `workspace` (by default the selected one)."""
    name = workspace if workspace is not None else workspaces.current(cfg.dir)
    b = cfg.backend
    if b.type == "s3":
        return _s3_backend(cfg, name)
    if b.type != "local":
        raise ConfigError(f'backend "{b.type}" is not available; use "local" or "s3"',
                          b.file, b.line)
    path = Path(str(b.attrs.get("path", "rhplan.state.json")))
    path = workspaces.local_state_path(cfg.dir, path if path.is_absolute() else cfg.dir / path,
                                       name, _workspace_dir(cfg))
    if name != workspaces.DEFAULT:
        # made on first use, as Terraform's local backend does (TF_WORKSPACE in CI)
        path.parent.mkdir(parents=True, exist_ok=True)
    return LocalBackend(path)


def workspace_names(cfg: Config) -> list[str]:
    """Every workspace of the configuration's backend, "default" first."""
    if cfg.backend.type == "s3":
        backend = _s3_backend(cfg, workspaces.DEFAULT)
        prefix = _key_prefix(cfg)
        keys = backend.list_keys(prefix + "/")  # type: ignore[attr-defined]
        return workspaces.s3_names(keys, backend.key, prefix)  # type: ignore[attr-defined]
    return workspaces.local_names(cfg.dir, _workspace_dir(cfg))


def _workspace_dir(cfg: Config) -> str:
    """The local backend's workspace_dir (Terraform's name), rhplan.state.d by default."""
    b = cfg.backend
    value = b.attrs.get("workspace_dir", workspaces.LOCAL_DIR)
    if not isinstance(value, str) or not value.strip() or Path(value).is_absolute() \
            or ".." in Path(value).parts:
        raise ConfigError('backend "local" workspace_dir must be a folder inside the '
                          'configuration folder, like "rhplan.state.d"', b.file, b.line)
    return value


def _key_prefix(cfg: Config) -> str:
    """The S3 backend's workspace_key_prefix (Terraform's name), env: by default."""
    b = cfg.backend
    value = b.attrs.get("workspace_key_prefix", workspaces.S3_PREFIX)
    if not isinstance(value, str) or not value or value.startswith("/") \
            or value.endswith("/"):
        raise ConfigError('backend "s3" workspace_key_prefix must be a non-empty string '
                          'without a leading or trailing /, like "env:"', b.file, b.line)
    return value


def not_overridden(what: str, unless: str | None = None) -> None:
    """Refuse to select a workspace while RHPLAN_WORKSPACE / TF_WORKSPACE chooses it
    (unless it names UNLESS): the selection would not take effect."""
    import os
    var = workspaces.overridden()
    if var and os.environ[var] != unless:
        raise RhplanError(f"the workspace is chosen by {var} for now, so {what} would not "
                          f"take effect; change or unset {var} instead")


def select_workspace(load: Callable[[], Config], name: str, or_create: bool) -> bool:
    """`workspace select NAME [-or-create]`: switch to NAME (made first if or_create and
    it does not exist). Returns whether it was made. The configuration is loaded (load)
    once the name is known to be valid."""
    not_overridden(f"selecting {name!r}")
    workspaces.check_name(name)
    cfg = load()
    if name not in workspace_names(cfg):
        if not or_create:
            raise RhplanError(f'workspace "{name}" does not exist; create it with rhplan '
                              f"workspace new {name}, or add -or-create")
        new_workspace(cfg, name)
        return True
    workspaces.select(cfg.dir, name)
    return False


def listed_workspaces(cfg: Config) -> tuple[list[str], str]:
    """`workspace list`: every workspace ("default" first) and the one in use, which is
    listed even before its first write (chosen by RHPLAN_WORKSPACE)."""
    current = workspaces.current(cfg.dir)
    names = workspace_names(cfg)
    if current not in names:
        names.append(current)
    return names, current


def new_workspace(cfg: Config, name: str) -> None:
    """Create workspace NAME with an empty state (as Terraform does), and select it."""
    workspaces.check_name(name)
    if name in workspace_names(cfg):
        raise RhplanError(f'workspace "{name}" already exists; select it with rhplan '
                          f"workspace select {name}")
    backend = backend_for(cfg, name)
    with backend.locked("workspace new"):
        backend.write(State.new())
    workspaces.select(cfg.dir, name)


def delete_workspace(cfg: Config, name: str, force: bool) -> int:
    """Delete workspace NAME's state; refuses one that still tracks resources unless
    force. Returns how many resources were forgotten."""
    workspaces.check_name(name)
    if name == workspaces.DEFAULT:
        raise RhplanError('the default workspace cannot be deleted')
    if name not in workspace_names(cfg):
        raise RhplanError(f'workspace "{name}" does not exist; see rhplan workspace list')
    if name == workspaces.current(cfg.dir):
        raise RhplanError(f'workspace "{name}" is the one in use; select another '
                          "(rhplan workspace select default) and delete it then")
    backend = backend_for(cfg, name)
    with backend.locked("workspace delete"):
        tracked = sorted(backend.read().resources)
        if tracked and not force:
            shown = ", ".join(tracked[:5]) + (f" and {len(tracked) - 5} more"
                                              if len(tracked) > 5 else "")
            raise RhplanError(
                f'workspace "{name}" still tracks {len(tracked)} resource(s) ({shown}); run '
                "rhplan destroy in it first, or add -force to delete it and forget them "
                "(they keep running, unmanaged)")
        if isinstance(backend, LocalBackend):
            _remove_local_states(backend)
        else:
            backend.delete_state()  # type: ignore[attr-defined]
    if isinstance(backend, LocalBackend):
        import shutil
        shutil.rmtree(backend.path.parent, ignore_errors=True)  # lock files, digest key
    return len(tracked)


def _remove_local_states(backend: LocalBackend) -> None:
    for p in (backend.path, backend.backup_path, backend.digest_key_path):
        p.unlink(missing_ok=True)


def _s3_backend(cfg: Config, workspace: str = workspaces.DEFAULT) -> Backend:
    values = _s3_settings(cfg)
    from rhplan.state.s3 import S3Backend  # imports botocore: only when used
    key = workspaces.s3_key(str(values["key"]), workspace, _key_prefix(cfg))
    return S3Backend(str(values["bucket"]), key, region=values["region"],
                     endpoint_url=values["endpoint_url"], profile=values["profile"])


def check_backend(cfg: Config) -> None:
    """The backend block's settings, checked without reaching the backend (validate)."""
    if cfg.backend.type == "s3":
        _s3_settings(cfg)
        _key_prefix(cfg)
    elif cfg.backend.type == "local":
        _workspace_dir(cfg)
    else:
        backend_for(cfg)  # names the backends there are


def _s3_settings(cfg: Config) -> dict[str, str | None]:
    b = cfg.backend
    missing = [k for k in ("bucket", "key") if k not in b.attrs]
    if missing:
        raise ConfigError(f'backend "s3" needs {" and ".join(missing)}: write bucket = '
                          '"my-bucket" and key = "path/rhplan.state.json"', b.file, b.line)
    values: dict[str, str | None] = {}
    for k in ("bucket", "key", "region", "endpoint_url", "profile"):
        v = b.attrs.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f'backend "s3" {k} must be a non-empty string', b.file, b.line)
        values[k] = v
    key = str(values["key"])
    if key.startswith("/") or key.endswith("/"):
        raise ConfigError(f'backend "s3" key {key!r} must name an object, like '
                          '"path/rhplan.state.json" (no leading or trailing /)', b.file, b.line)
    return values

