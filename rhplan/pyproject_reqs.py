"""A folder's pyproject.toml as a requirements source (Runhouse's `reqs:./`): its
[project] dependencies, installed with `uv pip install -r pyproject.toml`.

Only the dependencies, never the project itself: the folder's code already reaches the
servlet through the working_dir (its current directory and sys.path[0]), so building
and installing it (`pip install -e`) would add a build backend fetched from the index
and a rebuild on every edit, for nothing the servlet does not have."""
from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # a dependency there (pyproject.toml)
    import tomli as tomllib

NAME = "pyproject.toml"


def has_dependencies(folder: Path) -> bool:
    """Whether folder/pyproject.toml declares dependencies to install (a [project] with
    dependencies, or with them dynamic). A pyproject.toml of tool settings only has
    none. Raises ValueError (with the file's line) for a file that does not parse or
    whose dependencies are no list of requirement strings."""
    path = folder / NAME
    if not path.is_file():
        return False
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+)", str(exc))
        line = int(found.group(1)) if found else len(path.read_text(errors="replace"
                                                                 ).splitlines())
        raise PyprojectError(f"{NAME} is not valid TOML ({str(exc).split(' (at')[0]}); fix "
                             "it, or add a requirements.txt, which rhplan reads first",
                             line) from None
    project = data.get("project")
    if not isinstance(project, dict):
        return False
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise PyprojectError(f"{NAME}: [project] dependencies must be a list of requirement "
                             'strings, like dependencies = ["numpy>=1.26"]', None)
    # imported here: packaging costs ~20 ms of every start, for a folder's pyproject only
    from packaging.requirements import InvalidRequirement, Requirement

    for d in deps:
        try:
            Requirement(d)
        except InvalidRequirement as exc:
            raise PyprojectError(f"{NAME}: dependency {d!r} is not a valid requirement "
                                 f"({exc}); fix it", None) from None
    return bool(deps) or "dependencies" in (project.get("dynamic") or [])


class PyprojectError(ValueError):
    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line
