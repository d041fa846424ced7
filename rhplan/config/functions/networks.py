"""cidrhost/cidrnetmask/cidrsubnet(s), as Terraform computes them."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config.functions.args import (
    as_int,
    as_str,
    short,
)


def _network(prefix: Any) -> Any:
    import ipaddress  # only configurations that compute addresses need it

    text = as_str(prefix, "the prefix")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR expression {short(text)}; write e.g. "
                         "10.0.0.0/16") from None


def _fn_cidrhost(scope: Any, prefix: Any, hostnum: Any) -> str:
    net, n = _network(prefix), as_int(hostnum, "the host number")
    size = net.num_addresses
    index = n if n >= 0 else size + n
    if not 0 <= index < size:
        raise ValueError(f"prefix of {net.prefixlen} does not accommodate a host numbered {n}")
    return str(net.network_address + index)


def _fn_cidrnetmask(scope: Any, prefix: Any) -> str:
    net = _network(prefix)
    if net.version != 4:
        raise ValueError("only IPv4 prefixes have a netmask")
    return str(net.netmask)


def _fn_cidrsubnet(scope: Any, prefix: Any, newbits: Any, netnum: Any) -> str:
    net, bits, num = _network(prefix), as_int(newbits, "newbits"), as_int(netnum, "netnum")
    new_len = net.prefixlen + bits
    if bits < 0 or new_len > net.max_prefixlen:
        raise ValueError(f"insufficient address space to extend prefix of {net.prefixlen} "
                         f"by {bits}")
    if not 0 <= num < 2 ** bits:
        raise ValueError(f"prefix extension of {bits} does not accommodate a subnet "
                         f"numbered {num}")
    start = int(net.network_address) + (num << (net.max_prefixlen - new_len))
    return f"{type(net.network_address)(start)}/{new_len}"


def _fn_cidrsubnets(scope: Any, prefix: Any, *newbits: Any) -> list[str]:
    """Consecutive subnets, each aligned to its own size (Terraform's allocation)."""
    net = _network(prefix)
    width = net.max_prefixlen
    base = int(net.network_address)
    end = base + net.num_addresses
    out: list[str] = []
    cursor = base  # the first address not yet allocated
    for i, b in enumerate(newbits):
        length = net.prefixlen + as_int(b, f"newbits {i + 1}")
        if length > width or length < net.prefixlen:
            raise ValueError(f"would extend prefix to {length} bits, which is too long for "
                             f"an IPv{net.version} address")
        size = 1 << (width - length)
        start = -(-cursor // size) * size  # round up to this subnet's alignment
        if start + size > end:
            after = f" after {out[-1]}" if out else ""
            raise ValueError(f"not enough remaining address space for a subnet with a "
                             f"prefix of {length} bits{after}")
        out.append(f"{type(net.network_address)(start)}/{length}")
        cursor = start + size
    return out


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "cidrhost": _fn_cidrhost,
    "cidrnetmask": _fn_cidrnetmask,
    "cidrsubnet": _fn_cidrsubnet,
    "cidrsubnets": _fn_cidrsubnets,
}
