"""What a failed install or command said, as one line: uv's and pip's errors, their
resolver conflicts, the failing tool's own last line."""

from __future__ import annotations

from rhplan.errors import ProviderError
from rhplan.hosts.connection import CommandResult, Connection
from rhplan.hosts.envs.layout import UV_ENV


def _last_line(res: CommandResult) -> str:
    """The line of a failed command's output that says what went wrong.

    uv prints "error: ..." then "cause: ..." lines (the last cause is the
    root), sometimes followed by the failing tool's own output under
    "[stderr]" or "--- stderr"; pip prints "ERROR: ..." or, for a failed
    build, the tool's output closed by "[end of output]". The tool's last line
    is usually the real reason, so it is added to the message.
    """
    lines = [line.strip() for line in (res.stderr or res.stdout).splitlines() if line.strip()]
    conflict = _pip_conflict([line.strip() for line in f"{res.stdout}\n{res.stderr}".splitlines()
                              if line.strip()])
    if conflict:
        return conflict
    main_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].lower().startswith(_MAIN)), None
    )
    if main_at is None:
        rest = [line for line in lines if not _noise(line)]
        return _clip(rest[-1]) if rest else f"exit code {res.returncode}"
    main = lines[main_at].split(":", 1)[1].strip()
    detail = None
    after = lines[main_at + 1 :]
    if any(line in _OUTPUT_MARKERS for line in after):
        tool = [line for line in after if line not in _OUTPUT_MARKERS and not _noise(line)]
        detail = tool[-1] if tool else None
        if main.startswith("process didn't exit successfully") and main_at > 0:
            # The command line itself is noise next to its own error message.
            main = lines[main_at - 1].split(":", 1)[1].strip()
    elif "[end of output]" in lines:
        end = len(lines) - 1 - lines[::-1].index("[end of output]")
        detail = lines[end - 1] if end > 0 else None
        crossed = [line for line in lines if line.startswith("×")]
        if crossed:
            main = crossed[-1].lstrip("× ").strip()
    if detail and detail not in main:
        return _clip(f"{main.rstrip('.')}: {detail}")
    return _clip(main)


def _pip_conflict(lines: list[str]) -> str | None:
    """pip's resolver conflict, which it prints over several lines ("The conflict is
    caused by:" then one line per side), as one line naming both sides."""
    if "The conflict is caused by:" not in lines:
        return None
    at = lines.index("The conflict is caused by:")
    sides = []
    for line in lines[at + 1:]:
        if line.startswith(("To fix", "ERROR:", "Additionally")):
            break
        sides.append(line)
    head = next((ln.split(":", 1)[1].strip() for ln in lines
                 if ln.startswith("ERROR: Cannot install")), "conflicting dependencies")
    return _clip(f"{head.rstrip('.')}: {'; '.join(sides)}")


_MAIN = ("cause:", "error:")


_OUTPUT_MARKERS = {"[stderr]", "[stdout]", "--- stderr", "--- stdout"}


def _noise(line: str) -> bool:
    low = line.lower()
    return low.startswith(("hint:", "help:", "note:", "warning:", "[notice]")) or set(line) <= set(
        "^~ |"
    )


def _clip(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _run_checked(conn: Connection, argv: list[str], what: str) -> CommandResult:
    res = conn.run(argv, env=UV_ENV)
    if not res.ok:
        raise ProviderError(f"{what} failed: {_last_line(res)}")
    return res
