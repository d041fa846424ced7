"""Objects that live in a servlet (Runhouse's modules): a handle to one, whose methods
run there, on that object (ServletHandle.instance / get_instance).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rhplan.ray.servlets.servlet_wire import INSTANCE_METHOD

if TYPE_CHECKING:
    from rhplan.ray.servlets.handle import ServletHandle


class RemoteInstance:
    """An object living in a servlet (ServletHandle.instance / get_instance). Reading any
    attribute not starting with "_" gives a RemoteMethod: `h.add(2)` runs the object's
    add(2) in the servlet and returns its result; `h.total()` on a plain (non-callable)
    attribute returns its value (with arguments: TypeError). Errors raised there come back
    as a call's do, with the remote traceback. A few names are the handle's own: key (the
    name it is kept under), fetch() (a copy of the object here), delete(), and
    call_method(attr, ...) for a method named like one of them or starting with "_"."""

    def __init__(self, servlet: ServletHandle, key: str):
        self._servlet = servlet
        self.key = key

    def __getattr__(self, attr: str) -> RemoteMethod:
        if attr.startswith("_"):  # pickle, copy, IPython... probe these: stay local
            raise AttributeError(attr)
        return RemoteMethod(self._servlet, self.key, attr)

    def call_method(self, attr: str, *args: Any, **kwargs: Any) -> Any:
        return RemoteMethod(self._servlet, self.key, attr)(*args, **kwargs)

    def fetch(self) -> Any:
        """A copy of the object, unpickled here (its class must be importable here)."""
        return self._servlet.get(self.key)

    def delete(self) -> bool:
        """Drop the object from the servlet; False if it was not there."""
        return self._servlet.delete(self.key)

    def __repr__(self) -> str:
        return f"<remote object {self.key!r} in servlet {self._servlet.name!r}>"


class RemoteMethod:
    """attr of a remote object, called in the servlet."""

    def __init__(self, servlet: ServletHandle, key: str, attr: str):
        self._servlet, self._key, self._attr = servlet, key, attr

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._servlet._call_target((INSTANCE_METHOD, self._key, self._attr), args,
                                          kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._attr!r} of {self._key!r} in {self._servlet.name!r}>"

