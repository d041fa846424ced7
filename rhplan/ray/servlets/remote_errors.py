"""What a caller accepts from a servlet (issue 16 item 4).

The caller is the machine with cloud keys; the servlet runs whatever the env holds.
So nothing a servlet sends may name code for the caller to run:

- Envelopes (the answer to call, run, put, get, keys, delete, status; an error's
  parts) are loaded with `loads_data`: a pickle without globals, i.e. str, bytes,
  numbers, None, tuples, lists, dicts. A pickle that names any class or function is
  refused before anything runs.
- Exceptions arrive as type name + message + traceback text, with a plain-data
  description (servlet_wire.describe_exception). The caller rebuilds the exception as
  itself only when its class is one it already has: a builtin exception, a class of
  a module this process has already imported (nothing is imported on a servlet's
  word), or a class this process sent by value (cloudpickle's tracker id), called
  with plain-data arguments as pickle would. Anything else is a RemoteError carrying
  the type name, message and remote traceback. No __reduce__ of the servlet's ever
  runs here.

A call's own result (the "ok" value of call, the object of get) is the user's data
and is unpickled as such; what protects it is that only the servlet rhplan started
is asked (direct.py checks the identity recorded at start).
"""
from __future__ import annotations

import io
import pickle
import sys
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets.servlet_wire import unpack


class RemoteError(RhplanError):
    """An exception raised on the cluster whose class this process does not have (or
    would have to trust the cluster to rebuild): its type name, message and traceback."""

    def __init__(self, message: str, type_name: str = "", remote_message: str = "",
                 remote_traceback: str = ""):
        super().__init__(message)
        self.type_name = type_name
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.type_name, self.remote_message,
                             self.remote_traceback))


class _DataOnly(pickle.Unpickler):
    """Loads plain data only: any class or function in the pickle is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a servlet's answer named {module}.{name}: only plain "
                                     "data is accepted from a servlet")


def loads_data(data: Any, buffers: Any = None) -> Any:
    """A pickle of plain data (see the module docstring), or UnpicklingError."""
    return _DataOnly(io.BytesIO(data), buffers=buffers).load()


def unpack_data(body: Any) -> Any:
    """servlet_wire.unpack, loading plain data only (out-of-band byte strings come back
    as memoryviews of body)."""
    return unpack(body, loads_data)


def known_exception_class(module: str, qualname: str, tracker: Any = None) -> type | None:
    """The exception class a servlet names, if this process already has it: sent by
    value from here (cloudpickle's tracker id), builtin, or of an imported module."""
    if isinstance(tracker, str):
        cp = sys.modules.get("ray.cloudpickle.cloudpickle")
        cls = getattr(cp, "_DYNAMIC_CLASS_TRACKER_BY_ID", {}).get(tracker) if cp else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls
    if not isinstance(module, str) or not isinstance(qualname, str) or module == "__main__":
        return None  # the servlet's __main__ is not ours
    obj: Any = sys.modules.get(module)  # never imported on a servlet's word
    for part in qualname.split("."):
        if obj is None or part.startswith("<"):
            return None
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, BaseException) else None


def _rebuilt(desc: dict[str, Any]) -> BaseException | None:
    cls = known_exception_class(desc.get("module", ""), desc.get("qualname", ""),
                                desc.get("tracker"))
    args, state = desc.get("args"), desc.get("state")
    if cls is None or not isinstance(args, tuple):
        return None
    try:
        exc = cls(*args)  # what pickle does with BaseException's __reduce__
        if isinstance(state, dict):
            exc.__setstate__(state)
    except Exception:  # noqa: BLE001 - the class does not take these: the text form
        return None
    return exc if isinstance(exc, cls) else None


def remote_exception(servlet: str, blob: Any, type_name: str, message: str,
                     remote_tb: str) -> BaseException:
    """The exception a servlet reported, to raise here (see the module docstring)."""
    exc: BaseException | None = None
    if isinstance(blob, (bytes, bytearray, memoryview)):
        try:
            desc = loads_data(blob)
        except Exception:  # noqa: BLE001 - an older servlet's pickled exception: refused
            desc = None
        if isinstance(desc, dict):
            exc = _rebuilt(desc)
    if exc is None:
        exc = RemoteError(f"servlet {servlet!r}: {type_name}: {message}", str(type_name),
                          str(message), str(remote_tb or ""))
    exc.add_note(f"(raised in servlet {servlet!r})")
    if remote_tb:
        exc.add_note(f"Remote traceback (servlet {servlet!r}):\n{remote_tb}")
    return exc


def error_frame(servlet: str, body: Any) -> BaseException:
    """The exception of an ERROR frame: (description, type name, message, traceback)."""
    try:
        blob, type_name, message, remote_tb = loads_data(body)
    except Exception as exc:  # noqa: BLE001 - not what rhplan's servlets send
        return RemoteError(f"servlet {servlet!r} answered with an error rhplan does not "
                           f"accept ({type(exc).__name__}: {exc})")
    return remote_exception(servlet, blob, type_name, message, remote_tb)
