"""Runhouse-style package strings, code roots and content hashes of local folders.

A package string is what a user writes in an env's `reqs`:

    pip:numpy==1.26.4                  pip spec (a bare name means pip too)
    pip:torch --index-url URL          text from the first ` -` on: install args
    conda:pytorch                      conda spec
    reqs:./                            that folder's requirements.txt
    ./src/mypkg   /abs/dir   ~/code    a local folder (also: an existing folder
                                       under the config dir, or `local:DIR`)
    git+https://host/repo.git@REV      a git checkout at a pinned revision
    git+https://host/repo.git          the default branch: its commit is resolved
    https://github.com/org/repo        while planning and recorded (sources), so a
                                       new upstream commit is a planned change
    requirements.txt, ./x/requirements.txt   that file (as reqs:DIR)

Parsing is pure: it reads the local disk (to resolve folders) but never a host.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rhplan.tree_files import gitignore_patterns, kept_files

KINDS = ("pip", "conda", "reqs", "local", "git")
REQUIREMENTS = "requirements.txt"

# Markers of a project's root folder, as in Runhouse.
CODE_ROOT_MARKERS = (".git", "setup.py", "setup.cfg", "pyproject.toml", "requirements.txt")

_EXAMPLES = (
    "write 'pip:NAME==VERSION', 'conda:NAME', 'reqs:DIR', a local folder such as "
    "'./src/mypkg', or 'git+https://host/repo.git@REVISION'"
)


@dataclass(frozen=True)
class Requirement:
    """One parsed package string."""

    raw: str  # the string as configured
    kind: str  # "pip" | "conda" | "reqs" | "local" | "git"
    target: str  # pip spec; absolute dir for reqs/local; "git+URL@REV" for git
    args: tuple[str, ...]  # extra install args ("--index-url", "X")
    name: str | None  # canonical distribution name when knowable, else None


def parse_requirement(raw: str, base_dir: Path) -> Requirement:
    """Parse a Runhouse-style package string; relative paths are under base_dir.

    Raises ValueError with a message that says what to write instead; the
    caller adds file:line.
    """
    text = raw.strip()
    if not text:
        raise ValueError(f"empty package string; {_EXAMPLES}")
    spec, args = _split_args(text)

    if spec.startswith("git+"):
        return _parse_git(raw, spec, args)
    if _bare_git_url(spec):
        return _parse_git(raw, "git+" + spec, args)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec):
        # A bare URL (a wheel or sdist on a web server) is a pip target.
        return Requirement(raw, "pip", spec, args, None)

    prefix, sep, rest = spec.partition(":")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", prefix):
        method = prefix.lower()
        rest = rest.strip()
        if not rest:
            raise ValueError(f"'{raw}' names no package after '{prefix}:'; {_EXAMPLES}")
        if method == "pip":
            return _parse_pip(raw, rest, args, base_dir)
        if method == "conda":
            return Requirement(raw, "conda", rest, args, None)
        if method == "reqs":
            return _parse_reqs(raw, rest, args, base_dir)
        if method == "local":
            return _parse_local(raw, rest, args, base_dir)
        raise ValueError(
            f"'{raw}' uses an unknown install method '{prefix}'; the methods are pip, conda, "
            f"reqs and local; {_EXAMPLES}"
        )

    if spec.rsplit("/", 1)[-1] == REQUIREMENTS:
        # "requirements.txt" or "./deps/requirements.txt": that file, as reqs:DIR
        return _parse_reqs(raw, spec, args, base_dir)
    if _looks_like_path(spec) or (base_dir / spec).is_dir():
        return _parse_local(raw, spec, args, base_dir)
    return _parse_pip(raw, spec, args, base_dir)


def _split_args(text: str) -> tuple[str, tuple[str, ...]]:
    """Split "SPEC --opt X" into the spec and its install args.

    Runhouse splits at the first space; splitting at the first " -" instead
    gives the same answer for "pip:torch --index-url X" and also keeps specs
    with spaces whole ("numpy >= 1.26", "./my folder").
    """
    m = re.search(r"\s+-", text)
    if not m:
        return text, ()
    spec, rest = text[: m.start()].strip(), text[m.end() - 1 :]
    try:
        return spec, tuple(shlex.split(rest))
    except ValueError as exc:
        raise ValueError(
            f"the install args in '{text}' cannot be split ({exc}); close the quotes, "
            f"e.g. 'pip:torch --index-url https://download.pytorch.org/whl/cpu'"
        ) from None


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~"))


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = base_dir / p
    return p.resolve()


def _parse_pip(raw: str, spec: str, args: tuple[str, ...], base_dir: Path) -> Requirement:
    if spec.startswith("-"):
        # the installer would read it as an option (-e, --index-url=..., -r FILE); caught
        # here, with file:line, rather than on the host mid-apply
        raise ValueError(
            f"'{raw}' starts with '-', which an installer reads as an option, not a package; "
            f"install args go after the package: 'pip:torch --index-url URL'"
        )
    if _looks_like_path(spec):
        # "pip:./dir" or "pip:/x.whl": pip installs that path; it must exist here.
        path = _resolve(spec, base_dir)
        if not path.exists():
            raise ValueError(f"'{raw}' points at {path}, which does not exist")
        return Requirement(raw, "pip", str(path), args, None)
    # imported here (and below): packaging costs ~20 ms of every start (its regexes),
    # and a config whose envs have no pip reqs never needs it
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as _PipRequirement
    from packaging.utils import canonicalize_name

    try:
        parsed = _PipRequirement(spec)
    except InvalidRequirement as exc:
        if spec.startswith("git+") or "://" in spec:
            # A URL without "name @": pip learns the name when it builds it.
            return Requirement(raw, "pip", spec, args, None)
        hint = ""
        words = spec.split()
        if len(words) > 1 and all(_is_pip_spec(w) for w in words):
            a, b = words[:2]
            hint = f" (one package per string: write 'pip:{a}' and 'pip:{b}' as two entries)"
        reason = str(exc).splitlines()[0]
        raise ValueError(
            f"'{raw}' is not a valid package string: {reason}{hint}; {_EXAMPLES}"
        ) from None
    return Requirement(raw, "pip", spec, args, canonicalize_name(parsed.name))


def _is_pip_spec(text: str) -> bool:
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as _PipRequirement

    try:
        _PipRequirement(text)
    except InvalidRequirement:
        return False
    return True


def _parse_reqs(raw: str, spec: str, args: tuple[str, ...], base_dir: Path) -> Requirement:
    path = _resolve(spec, base_dir)
    if path.name == REQUIREMENTS and not path.is_dir():
        if not path.is_file():
            raise ValueError(f"'{raw}': {path} does not exist; fix the path (relative paths "
                             "start at the configuration's folder)")
        path = path.parent
    if path.is_file():
        raise ValueError(
            f"'{raw}' names a file; reqs: takes the folder that holds requirements.txt, "
            f"e.g. 'reqs:{_relative_hint(path.parent, base_dir)}'"
        )
    if reqs_file(path) is None:
        raise ValueError(
            f"'{raw}': there is no requirements.txt (nor a pyproject.toml with [project] "
            f"dependencies) in {path}; add one, or list the packages as 'pip:NAME' entries"
        )
    return Requirement(raw, "reqs", str(path), args, None)


def reqs_file(folder: Path) -> str | None:
    """What a reqs: folder installs: its requirements.txt, else its pyproject.toml's
    [project] dependencies (rhplan/pyproject_reqs.py), else None."""
    if (folder / REQUIREMENTS).is_file():
        return REQUIREMENTS
    from rhplan import pyproject_reqs
    return pyproject_reqs.NAME if pyproject_reqs.has_dependencies(folder) else None


def _relative_hint(path: Path, base_dir: Path) -> str:
    try:
        rel = path.relative_to(base_dir.resolve())
    except ValueError:
        return str(path)
    return "./" if str(rel) == "." else f"./{rel}"


def _parse_local(raw: str, spec: str, args: tuple[str, ...], base_dir: Path) -> Requirement:
    path = _resolve(spec, base_dir)
    if not path.exists():
        raise ValueError(
            f"'{raw}': the local folder {path} does not exist; fix the path (relative "
            f"paths start at the configuration's folder)"
        )
    if not path.is_dir():
        if path.name.endswith((".whl", ".tar.gz", ".zip")):
            raise ValueError(f"'{raw}' is a file, not a folder; to install it write 'pip:{spec}'")
        raise ValueError(
            f"'{raw}' is a file, not a folder; name the folder that holds the code, "
            f"e.g. '{_relative_hint(path.parent, base_dir)}'"
        )
    return Requirement(raw, "local", str(path), args, None)


def _parse_git(raw: str, spec: str, args: tuple[str, ...]) -> Requirement:
    url = spec[len("git+") :]
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "ssh", "git", "file") or not parts.path:
        raise ValueError(
            f"'{raw}' is not a git URL pip can install; write "
            f"'git+https://host/repo.git@REVISION' (or git+ssh://git@host/repo.git@REVISION)"
        )
    # The revision follows the last "@" of the path; an "@" in the host part
    # (git+ssh://git@host/...) is the user name. Without one: the default branch, whose
    # commit the planner resolves and records (resolve_head).
    if "@" in parts.path and not parts.path.rpartition("@")[2]:
        raise ValueError(
            f"'{raw}' has an empty revision; write one after '@' ('...@v1.2.3': a tag, "
            f"branch or commit), or nothing for the default branch"
        )
    problem = git_problem(url, parts.path.rpartition("@")[2] if "@" in parts.path else None)
    if problem:
        raise ValueError(f"'{raw}': {problem}")
    name = None
    for item in parts.fragment.split("&"):
        key, _, value = item.partition("=")
        if key == "egg" and value:
            from packaging.utils import canonicalize_name

            name = canonicalize_name(value)
    return Requirement(raw, "git", spec, args, name)


# Hosts whose bare https URLs are git repositories (Runhouse reads them so).
GIT_HOSTS = ("github.com", "gitlab.com", "bitbucket.org")
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2", ".tar")


def _bare_git_url(spec: str) -> bool:
    """https://github.com/org/repo (or any URL ending in .git, file:// included): a git
    repository, not a file for pip."""
    parts = urlsplit(spec)
    if parts.scheme not in ("https", "http", "ssh", "git", "file") or not parts.path:
        return False
    path = parts.path.rpartition("@")[0] or parts.path
    if path.endswith(_ARCHIVES):
        return False
    host = parts.hostname or ""
    return path.rstrip("/").endswith(".git") or (
        host in GIT_HOSTS and len([p for p in path.split("/") if p]) == 2)


def unpinned(req: Requirement) -> bool:
    """A git package at its repository's default branch (no @REVISION)."""
    return req.kind == "git" and split_git(req.target)[1] is None


def pinned(req: Requirement, commit: str) -> Requirement:
    """req at commit (an unpinned git package, once its commit is resolved)."""
    url, _ = split_git(req.target)
    fragment = req.target.partition("#")[2]
    target = f"git+{url}@{commit}" + (f"#{fragment}" if fragment else "")
    return Requirement(req.raw, req.kind, target, req.args, req.name)


def resolve_head(req: Requirement, timeout: float = 60.0) -> str:
    """The commit the default branch of an unpinned git package points at, asked of the
    repository with `git ls-remote` from this machine. ValueError says why not."""
    import shutil
    import subprocess

    url, _ = split_git(req.target)
    git = shutil.which("git")
    if git is None:
        raise ValueError(f"'{req.raw}' names no revision, and resolving the default branch "
                         "needs git on this machine; install git or pin a revision (@v1.2.3)")
    try:
        res = subprocess.run([git, "ls-remote", "--", url, "HEAD"], capture_output=True,
                             text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
                             env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except subprocess.TimeoutExpired:
        raise ValueError(f"'{req.raw}': git ls-remote {url} did not answer within "
                         f"{timeout:g} s; check the URL and network, or pin a revision") from None
    commit = res.stdout.split()[0] if res.returncode == 0 and res.stdout.split() else ""
    if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
        why = (res.stderr.strip().splitlines() or ["no HEAD in its answer"])[-1]
        raise ValueError(f"'{req.raw}': cannot resolve its default branch ({why[:200]}); "
                         "check the URL, or pin a revision (@v1.2.3)")
    return commit


def split_git(target: str) -> tuple[str, str | None]:
    """"git+URL@REV#egg=x" -> (URL, REV): the URL as an installer records it in
    direct_url.json (no "git+", revision or fragment), and the revision if any."""
    url = target[len("git+"):] if target.startswith("git+") else target
    parts = urlsplit(url.partition("#")[0])
    path, at, rev = parts.path.rpartition("@")
    if not at:
        path, rev = parts.path, ""
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), rev or None


# What git accepts in a ref name, minus what an argv could take for an option: a
# revision is a tag, branch or commit, never "--upload-pack=..." nor "v1;touch x".
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")


def git_problem(url: str, revision: str | None) -> str | None:
    """Why a git URL and revision could be read by git as something else, or None.

    git runs with them as arguments: a host starting with '-' is an ssh option
    (-oProxyCommand=...), a revision starting with '-' a git option, and spaces or
    line breaks are never part of either. Refused rather than escaped, with what to
    write instead."""
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        return "a git URL has no spaces or line breaks; write 'https://host/repo.git'"
    # "scheme://user@host/..." or scp-like "user@host:path"
    host = urlsplit(url).netloc.rpartition("@")[2] if "://" in url else url.partition("@")[2]
    if host.startswith("-"):
        return "the git host starts with '-', which git would read as an option"
    if revision is not None and (not _REVISION.fullmatch(revision) or ".." in revision):
        return (f"revision {revision!r} is not a tag, branch or commit (letters, digits, "
                "'.', '_', '/', '+' and '-', not first, no '..'); e.g. 'v1.2.3' or a commit")
    return None


def find_code_root(path: Path) -> Path:
    """The nearest folder at or above path that looks like a project root.

    A root holds .git, setup.py, setup.cfg, pyproject.toml or requirements.txt;
    with none up to /, the path itself is its own root.
    """
    path = Path(path).expanduser().resolve()
    start = path if path.is_dir() else path.parent
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in CODE_ROOT_MARKERS):
            return folder
    return path


def tree_hash(path: Path) -> str:
    """sha256 over the relative paths and contents of the files under path.

    Skips .git, __pycache__, *.pyc, .venv, build, *.egg-info and what the
    top-level .gitignore names, so the hash changes when the code does and not
    when a build or test run leaves files behind.
    """
    root = Path(path).expanduser().resolve()
    digest = hashlib.sha256()
    if root.is_file():
        digest.update(root.name.encode() + b"\0" + _file_digest(root))
        return digest.hexdigest()
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    for dirpath, rel, fname in kept_files(str(root), gitignore_patterns(root)):
        # Length-free framing: the path is NUL-terminated, the content
        # enters as its own fixed-size digest.
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(_file_digest(Path(dirpath) / fname))
    return digest.hexdigest()


def _file_digest(file: Path) -> bytes:
    h = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        # A dangling symlink: hash where it points, so retargeting it counts.
        h.update(b"symlink:" + os.readlink(file).encode("utf-8", "surrogateescape"))
    return h.digest()
