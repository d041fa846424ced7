"""Files and the machine that plans: file*, fileset, templatefile, paths, env()."""
from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rhplan.config import values as ev
from rhplan.config.functions.args import (
    as_map,
    as_str,
    short,
)


def _path(scope: Any, path: Any) -> Path:
    p = Path(os.path.expanduser(as_str(path, "the path")))
    return p if p.is_absolute() else scope.base_dir / p


def _fn_file(scope: Any, path: Any) -> str:
    p = _path(scope, path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no such file {str(p)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{str(p)!r} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(p)!r} is not UTF-8 text") from None


def _fn_fileexists(scope: Any, path: Any) -> bool:
    return _path(scope, path).is_file()


def _fn_templatefile(scope: Any, path: Any, variables: Any) -> str:
    """Render a template file with only the given variables in scope (as Terraform)."""
    from rhplan.config import template  # the template parser is needed only here

    variables = _template_vars(variables)
    if getattr(scope, "in_template", False):
        raise ValueError("cannot call templatefile from inside a template")
    p = _path(scope, path)
    text = _fn_file(scope, str(p))
    return template.render_file(text, p.name, variables, scope)


def _fn_templatestring(scope: Any, text: Any, variables: Any) -> str:
    """Render a string (usually read with file() or from a variable) as a template."""
    from rhplan.config import template

    variables = _template_vars(variables)
    if getattr(scope, "in_template", False):
        raise ValueError("cannot call templatestring from inside a template")
    return template.render_file(as_str(text, "the template"), "template string", variables,
                                scope)


def _template_vars(variables: Any) -> dict[str, Any]:
    variables = as_map(variables, "the variables")
    for name in variables:
        if not re.fullmatch(r"[A-Za-z_][\w-]*", name):
            raise ValueError(f"invalid template variable name {name!r}: it must start with a "
                             "letter or underscore and contain only letters, digits, "
                             "underscores and dashes")
    return variables


def _file_bytes(scope: Any, path: Any) -> bytes:
    p = _path(scope, path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"no such file {str(p)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{str(p)!r} is a directory, not a file") from None


def _file_hasher(name: str) -> Callable[..., str]:
    def fn(scope: Any, path: Any) -> str:
        return hashlib.new(name, _file_bytes(scope, path)).hexdigest()
    return fn


def _fn_filebase64(scope: Any, path: Any) -> str:
    return base64.b64encode(_file_bytes(scope, path)).decode()


def _fn_fileset(scope: Any, path: Any, pattern: Any) -> list[str]:
    """Files under path matching pattern (`*`, `**`, `?`), relative to path, sorted."""
    root = _path(scope, path)
    pat = as_str(pattern, "the pattern")
    if not root.is_dir():
        return []
    found: set[str] = set()
    try:
        for p in root.glob(pat):
            if p.is_file():
                found.add(p.relative_to(root).as_posix())
                if len(found) > MAX_FILESET:  # fileset("/", "**/*") would walk the disk
                    break
    except (ValueError, NotImplementedError) as exc:  # a pattern pathlib refuses
        raise ValueError(f"invalid pattern {short(pat)}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot list {str(root)!r}: {exc.strerror}") from None
    if len(found) > MAX_FILESET:
        raise ValueError(f"the pattern matches more than {MAX_FILESET} files; narrow the "
                         "path or the pattern")
    return ev.SetValue(sorted(found))


MAX_FILESET = 10_000



def _fn_env(scope: Any, name: Any, *default: Any) -> Any:
    """rhplan's own: an environment variable of the machine that plans."""
    name = as_str(name, "the name")
    value = os.environ.get(name)
    if value is None:
        if not default or default[0] is None:
            raise ValueError(f"environment variable {name} is not set; export it or give a "
                             f'default: env("{name}", "fallback")')
        return default[0]
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "file": _fn_file,
    "fileexists": _fn_fileexists,
    "fileset": _fn_fileset,
    "filebase64": _fn_filebase64,
    "filemd5": _file_hasher("md5"),
    "filesha1": _file_hasher("sha1"),
    "filesha256": _file_hasher("sha256"),
    "filesha512": _file_hasher("sha512"),
    "templatestring": _fn_templatestring,
    "templatefile": _fn_templatefile,
    "abspath": lambda scope, p: str((scope.base_dir / os.path.expanduser(as_str(p))).resolve()),
    "basename": lambda scope, p: os.path.basename(as_str(p)),
    "dirname": lambda scope, p: os.path.dirname(as_str(p)),
    "pathexpand": lambda scope, p: os.path.expanduser(as_str(p)),
    "env": _fn_env,
}
