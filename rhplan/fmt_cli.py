"""`rhplan fmt [TARGET...]`: Terraform's fmt for rhplan's files (*.hcl, *.tfvars).

Flags and exit codes as Terraform's: files are rewritten and listed by default;
-check writes nothing and exits 3 if any file would change (listing them); -diff
prints a unified diff; -recursive goes into subfolders; -write=false and -list=false
turn those off; `-` formats standard input to standard output. A file rhplan cannot
parse is left alone and reported (file:line), and the exit code is then 2."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

SUFFIXES = (".hcl", ".tfvars")


@click.command("fmt")
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option("--list", "list_", default="true", type=click.Choice(["true", "false"]),
              help="List files whose formatting changed (default true).")
@click.option("--write", default="true", type=click.Choice(["true", "false"]),
              help="Write the result to the files (default true).")
@click.option("--diff", is_flag=True, help="Print a diff of the changes.")
@click.option("--check", is_flag=True,
              help="Change nothing; exit 3 if any file is not formatted (listing them).")
@click.option("--recursive", is_flag=True, help="Also format files in subfolders.")
@click.pass_obj
def fmt_command(obj: object, targets: tuple[str, ...], list_: str, write: str, diff: bool,
                check: bool, recursive: bool) -> None:
    """Rewrite configuration files in the canonical layout (as terraform fmt)."""
    from rhplan import views
    from rhplan.config.load import parse_cache_dir
    from rhplan.errors import ConfigError

    base = Path(getattr(obj, "chdir", "."))
    listing, writing = list_ == "true", write == "true" and not check
    if targets == ("-",):
        src = sys.stdin.read()
        try:
            views.formatted_text(formatted(src, "<stdin>", None, None))
        except ConfigError as exc:
            views.error(str(exc))
            sys.exit(2)
        return
    errors: list[str] = []
    changed: list[str] = []
    cache = parse_cache_dir()
    for path, display in _files(base, targets or (".",), recursive, errors):
        try:
            src = path.read_bytes().decode("utf-8")
            out = formatted(src, display, path, cache)
        except UnicodeDecodeError:
            errors.append(f"{display}: not UTF-8 text; save it as UTF-8")
            continue
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        except OSError as exc:
            errors.append(f"{display}: cannot read it ({exc.strerror})")
            continue
        if out == src:
            continue
        changed.append(display)
        views.reformatted(display, src, out, listing, diff)
        if writing:
            _write(path, out)
    for e in errors:
        views.error(e)
    if errors:
        sys.exit(2)
    if check and changed:
        sys.exit(3)


def formatted(src: str, display: str, path: Path | None, cache: Path | None) -> str:
    """src in the canonical layout, once rhplan's parser accepts it (as Terraform's fmt
    formats only what parses: a broken file could be laid out in surprising ways)."""
    from rhplan.config import parse
    from rhplan.fmt import format_text
    if path is not None:
        parse.parse_file(path, display, cache)  # cached by content hash
    else:
        parse.parse_text(src, display)
    return format_text(src, display)


def _files(base: Path, targets: tuple[str, ...], recursive: bool, errors: list[str]
           ) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for t in targets:
        path = Path(t) if Path(t).is_absolute() else base / t
        shown = os.path.normpath(t)
        if path.is_dir():
            out += _folder(path, shown, recursive)
        elif path.is_file():
            if not path.name.endswith(SUFFIXES):
                errors.append(f"{shown}: rhplan fmt formats *.hcl and *.tfvars files only")
                continue
            out.append((path, shown))
        else:
            errors.append(f"{shown}: no such file or folder; give a file or folder to format")
    return out


def _folder(path: Path, shown: str, recursive: bool) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return out
    for e in entries:
        if e.name.startswith((".", "~")):  # .rhplan/, .git/, editor files: as Terraform
            continue
        sub = os.path.join(shown, e.name) if shown != "." else e.name
        if e.is_dir():
            if recursive:
                out += _folder(Path(e.path), sub, recursive)
        elif e.name.endswith(SUFFIXES) and e.is_file():
            out.append((Path(e.path), sub))
    return out


def _write(path: Path, text: str) -> None:
    """Replaced whole (a temp file renamed over it), keeping the file's mode; a symlink
    keeps pointing at its file, which is the one rewritten."""
    path = path.resolve()
    tmp = path.with_name(f".{path.name}.fmt{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
