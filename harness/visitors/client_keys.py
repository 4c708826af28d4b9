"""Who a request comes from, for the fair share (one comparison per visitor): the visitor's address as the proxies
the operator trusts saw it, IPv6 visitors by their /64 (one household or phone network's block, which a single
visitor can rotate through).

The operator names the proxies in front of the app with one setting (`--trusted-proxies`, SBS_TRUSTED_PROXIES):
- "" (the default): none; the connection's address is the visitor's, whatever headers a client sends;
- addresses or networks, "127.0.0.1,10.0.0.0/8" (as uvicorn's `--forwarded-allow-ips`): a request from one of them
  is keyed by the last address in its X-Forwarded-For (every header line, in order) that is not itself a trusted
  proxy. This is uvicorn's own algorithm, and uvicorn runs it: `trusted_proxy_addresses` is handed to the server
  Gradio starts, which then reports the visitor's address as the connection's;
- a number of hops, "1": that many proxies, each appending the address it saw, stand in front whatever their
  address (a Hugging Face Space: its proxy's address is not documented). Written here because uvicorn has no hop
  count: the Nth entry from the right is the visitor's as the outermost proxy saw it (entries before it are the
  client's own word).
"""

from __future__ import annotations

import ipaddress
import logging
import threading

log = logging.getLogger(__name__)

ONE_ADDRESS_WARNING_AFTER = 10  # requests, all from one address, before the operator is told a proxy may hide them


class ClientKeys:
    def __init__(self, trusted_proxies: str = ""):
        setting = trusted_proxies.strip()
        self.hops = int(setting) if setting.isdigit() else 0
        # What the server is told to trust (see the module's docstring); "" trusts nobody, loopback included: by
        # default uvicorn trusts X-Forwarded-For from 127.0.0.1, which any local process could send.
        self.trusted_proxy_addresses = "" if setting.isdigit() else setting
        if self.trusted_proxy_addresses:
            for entry in self.trusted_proxy_addresses.split(","):  # a typo is an error, not a proxy never matched
                ipaddress.ip_network(entry.strip(), strict=False)
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._warned = False

    def key(self, request) -> str:
        """The visitor's key for a `gr.Request` or a Starlette request (None: "")."""
        if request is None:
            return ""
        peer = request.client.host if request.client else ""
        address = peer
        if self.hops:
            entries = [entry.strip() for line in _header_lines(request) for entry in line.split(",") if entry.strip()]
            if len(entries) >= self.hops:  # fewer: the request did not come through the proxies
                address = entries[-self.hops]
        return network_key(address)

    def observe(self, key: str, forwarded: bool) -> None:
        """Count an admitted request's key; tell the operator, once, when the first requests all share one address
        (every visitor behind one untrusted proxy shares one place) or carry X-Forwarded-For that nobody trusts."""
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            if self._warned:
                return
            untrusted_header = forwarded and not (self.hops or self.trusted_proxy_addresses)
            one_address = len(self._seen) == 1 and self._seen[key] >= ONE_ADDRESS_WARNING_AFTER
            if untrusted_header or one_address:
                self._warned = True
                log.warning(
                    "every request so far comes from %s%s: if a proxy, tunnel or container network stands in front "
                    "of the app, every visitor shares one place in the queue. Name it with --trusted-proxies "
                    "(addresses, or a hop count; a Space sets 1).",
                    key,
                    " and carries X-Forwarded-For, which no trusted proxy sent" if untrusted_header else "",
                )


def _header_lines(request) -> list[str]:
    headers = request.headers
    if hasattr(headers, "getlist"):  # Starlette's headers: every X-Forwarded-For line, in order
        return headers.getlist("x-forwarded-for")
    value = headers.get("x-forwarded-for") if hasattr(headers, "get") else getattr(headers, "x-forwarded-for", None)
    return [value] if value else []


def network_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64 network (an IPv4-mapped one as the IPv4 address)."""
    host = address.strip()
    if host.startswith("[") and "]" in host:  # [v6]:port
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:  # v4:port
        host = host.split(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return address[:64]  # not an address (a Unix socket, or a proxy's odd entry): keyed as written
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
