"""This machine's public address, as a web service outside sees it: the default for a
cluster's allowed_cidrs.

The address a laptop has on its own interfaces is usually a private one behind NAT, so
it is asked of a service that echoes the caller's address back, by default AWS's own
https://checkip.amazonaws.com (the provider block's `public_ip_url` names another, or
"" for none). The lookup is bounded (RHPLAN_AWS_PUBLIC_IP_TIMEOUT seconds in all,
default 5) and done once per process; an answer that is not one IP address (a captive
portal's page, an error) is no answer. Without one, the plan refuses to guess.
"""
from __future__ import annotations

import ipaddress
import os
import threading
import urllib.request
from urllib.parse import urlsplit

DEFAULT_URL = "https://checkip.amazonaws.com"

_cache: dict[str, tuple[str | None, str]] = {}
_lock = threading.Lock()


def _timeout() -> float:
    return float(os.environ.get("RHPLAN_AWS_PUBLIC_IP_TIMEOUT", "5"))


def _ask(url: str, timeout: float) -> tuple[str | None, str]:
    """One bounded HTTP GET: (address, "") or (None, why not)."""
    answer: list[tuple[str | None, str]] = []

    def get() -> None:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "rhplan"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
                body = resp.read(100)
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            answer.append((None, str(reason)))
            return
        text = body.decode("ascii", errors="replace").strip()
        try:
            answer.append((str(ipaddress.ip_address(text)), ""))
        except ValueError:
            answer.append((None, f"it answered {text[:40]!r}, not an IP address"))

    worker = threading.Thread(target=get, name="rhplan-public-ip", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        return None, f"no answer within {timeout:g} s"
    return answer[0]


def public_address(url: str | None) -> tuple[str | None, str]:
    """(this machine's public IP address, "") or (None, why it is not known)."""
    url = DEFAULT_URL if url is None else url
    if not url:
        return None, "public_ip_url is \"\" (no lookup)"
    if urlsplit(url).scheme not in ("http", "https"):
        return None, f"public_ip_url {url!r} is not an http(s) URL"
    with _lock:
        if url not in _cache:
            _cache[url] = _ask(url, _timeout())
        return _cache[url]


def single_host_cidr(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"
