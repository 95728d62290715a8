# -*- coding: utf-8 -*-
"""Filters berth.stack.cidr (an address or network in the CIDR form pg_hba.conf needs) and
berth.stack.host_addresses (a host's own addresses, from its facts, in that form)."""

from __future__ import annotations

import ipaddress

DOCUMENTATION = r"""
name: cidr
short_description: An IP address or network as a CIDR network, or "" if it is neither
description:
  - 192.0.2.10 gives 192.0.2.10/32, 2001:db8::1 gives 2001:db8::1/128, 192.0.2.7/24 gives
    192.0.2.0/24 (host bits cleared). Anything else (a host name, "any", a typo) gives "", so a
    role's checks can refuse it with their own message.
positional: _input
options:
  _input:
    description: The address or network.
    type: str
    required: true
"""

EXAMPLES = r"""
valid: "{{ postgresql_remote_clients | map('berth.stack.cidr') | select('eq', '') | length == 0 }}"
"""

RETURN = r"""
_value:
  description: The network, or "".
  type: str
"""


def cidr(value):
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        return ""


def host_addresses(facts):
    """Every IPv4 and IPv6 address of the host's interfaces, from ansible_facts, as cidr gives."""
    found = list(facts.get("all_ipv4_addresses") or []) + list(facts.get("all_ipv6_addresses") or [])
    return [cidr(address) for address in found]


class FilterModule:
    def filters(self):
        return {"cidr": cidr, "host_addresses": host_addresses}
