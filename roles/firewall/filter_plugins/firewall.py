"""Address and ufw-rule helpers for the firewall role (Python's ipaddress: no netaddr needed)."""

import ipaddress
import re


def _network(value):
    """A source as ufw stores it: 'any', a host address, or a network without host bits."""
    text = str(value).strip()
    if text in ("any", "0.0.0.0/0", "::/0"):
        return "any"
    net = ipaddress.ip_network(text, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def firewall_source_valid(value):
    """Whether value is 'any', an IP address or a CIDR network."""
    try:
        _network(value)
    except ValueError:
        return False
    return True


def firewall_ip_in(address, sources):
    """Whether address (an IP, as in SSH_CONNECTION) is in one of sources ('any' matches all)."""
    addr = ipaddress.ip_address(str(address).split("%")[0])
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for source in sources:
        if str(source).strip() == "any":
            return True
        net = ipaddress.ip_network(str(source).strip(), strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False


def _tuples(text):
    """ufw's '### tuple ###' lines in one rules file: (fields, comment) for each."""
    for line in text.splitlines():
        if line.startswith("### tuple ###"):
            fields = line[len("### tuple ###"):].split()
            comment = ""
            if fields and fields[-1].startswith("comment="):
                comment = bytes.fromhex(fields.pop()[len("comment="):]).decode("utf-8", "replace")
            yield fields, comment


def firewall_ufw_rules(texts):
    """The rules in ufw's user.rules / user6.rules contents, one per rule: an IPv4 and an IPv6
    tuple from 'any' are the same rule. Each is a dict with rule, proto, port, from, comment and
    simple (a plain incoming rule that berth can express)."""
    rules = {}
    for text in texts:
        for fields, comment in _tuples(text):
            # action proto dport dst sport src [dapp sapp] direction
            simple = (len(fields) == 7 and fields[0] in ("allow", "deny", "reject", "limit")
                      and fields[3] in ("0.0.0.0/0", "::/0") and fields[4] == "any"
                      and fields[6] == "in")
            if simple:
                rule = {"rule": fields[0], "proto": fields[1], "port": fields[2],
                        "from": _network(fields[5]), "comment": comment, "simple": True}
                key = (rule["rule"], rule["proto"], rule["port"], rule["from"])
            else:
                rule = {"tuple": " ".join(fields), "comment": comment, "simple": False}
                key = rule["tuple"]
            rules.setdefault(key, rule)
    return list(rules.values())


def _key(item):
    """A declared rule (dict with rule, proto, port, from) as firewall_ufw_rules keys it."""
    return (str(item.get("rule", "allow")), str(item.get("proto", "tcp")), str(item["port"]),
            _network(item.get("from", "any")))


def firewall_missing(declared, texts, comment_prefix=""):
    """The declared rules that ufw's user.rules and user6.rules contents (texts, in that order)
    do not hold with their comment (comment_prefix + comment) in each family they apply to: a
    rule from 'any' must be in both, one from an address in its own family's file."""
    present = []
    for text in texts:
        present.append({(r["rule"], r["proto"], r["port"], r["from"]): r["comment"]
                        for r in firewall_ufw_rules([text]) if r["simple"]})
    missing = []
    for item in declared:
        key = _key(item)
        if key[3] == "any":
            families = (0, 1)
        else:
            families = (0,) if ipaddress.ip_network(key[3]).version == 4 else (1,)
        comment = comment_prefix + str(item.get("comment", ""))
        if any(present[f].get(key) != comment for f in families):
            missing.append(item)
    return missing


def firewall_ufw_settings(text):
    """The KEY=value settings of a ufw configuration file (/etc/default/ufw, ufw.conf),
    quotes removed."""
    settings = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Z0-9_]+)=(.*)$", line.strip())
        if match:
            settings[match.group(1)] = match.group(2).strip().strip("\"'")
    return settings


def firewall_sysctl_missing(wanted, text):
    """The settings of wanted (dotted key: value) that ufw's sysctl.conf text (slashed keys) does
    not hold: a key absent, or whose last uncommented line sets another value (the line
    lineinfile would replace, and the one `sysctl -p` applies last)."""
    held = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z0-9_/.-]+)\s*=\s*(.*)$", line.strip())
        if match:
            held[match.group(1).replace(".", "/")] = match.group(2).strip()
    return {key: value for key, value in wanted.items()
            if held.get(key.replace(".", "/")) != str(value)}


def firewall_undeclared(rules, declared):
    """The rules (from firewall_ufw_rules) that the declared ones (dicts with rule, proto, port,
    from) do not account for."""
    keys = {_key(item) for item in declared}
    return [r for r in rules
            if not r["simple"] or (r["rule"], r["proto"], r["port"], r["from"]) not in keys]


class FilterModule:
    """The firewall role's filters."""

    def filters(self):
        return {
            "firewall_source_valid": firewall_source_valid,
            "firewall_ip_in": firewall_ip_in,
            "firewall_ufw_rules": firewall_ufw_rules,
            "firewall_undeclared": firewall_undeclared,
            "firewall_missing": firewall_missing,
            "firewall_ufw_settings": firewall_ufw_settings,
            "firewall_sysctl_missing": firewall_sysctl_missing,
        }
