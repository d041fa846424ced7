"""Files over the connection's one SFTP session: written atomically (a private
temporary file, then a rename), folders made as needed."""
from __future__ import annotations

import posixpath
import secrets
import stat
from typing import Any


def put(sftp: Any, data: bytes, path: str, mode: int) -> None:
    """Write data to path with mode: nobody reads it half-written or before its mode."""
    parent = posixpath.dirname(path) or "."
    makedirs(sftp, parent)
    tmp = posixpath.join(parent, f".rhplan-tmp-{secrets.token_hex(8)}")
    f = sftp.open(tmp, "wx")  # O_EXCL
    try:
        try:
            f.chmod(0o600)  # nobody else reads it while we write it
            f.set_pipelined(True)
            f.write(data)
            f.chmod(mode)
        finally:
            f.close()
        try:
            sftp.posix_rename(tmp, path)
        except OSError:
            # A server without posix-rename@openssh.com: plain rename
            # refuses to overwrite, so remove the old file first.
            try:
                sftp.remove(path)
            except FileNotFoundError:
                pass
            sftp.rename(tmp, path)
    except BaseException:
        try:
            sftp.remove(tmp)
        except Exception:
            pass
        raise


def get(sftp: Any, path: str, where: str) -> bytes:
    attrs = sftp.stat(path)
    if stat.S_ISDIR(attrs.st_mode or 0):
        raise IsADirectoryError(f"{path} on {where} is a directory")
    with sftp.open(path, "rb") as f:
        f.prefetch(attrs.st_size)
        return bytes(f.read())


def makedirs(sftp: Any, folder: str) -> None:
    """mkdir -p over SFTP."""
    missing = []
    current = folder
    while current not in ("", "/", "."):
        try:
            if stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                break
            raise NotADirectoryError(f"{current} exists and is not a directory")
        except FileNotFoundError:
            missing.append(current)
            current = posixpath.dirname(current)
    for d in reversed(missing):
        try:
            sftp.mkdir(d)
        except OSError:
            # Someone else (another thread) made it meanwhile: fine if it is a folder.
            if not stat.S_ISDIR(sftp.stat(d).st_mode or 0):
                raise
