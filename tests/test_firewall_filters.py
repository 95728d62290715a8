"""The firewall role's ufw readers against ufw's own file formats (Debian 12's ufw 0.36)."""

import importlib.util
import pathlib

PLUGIN = pathlib.Path(__file__).resolve().parent.parent / "roles/firewall/filter_plugins/firewall.py"
_spec = importlib.util.spec_from_file_location("firewall_filters", PLUGIN)
fw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fw)

SSH = "626572746820737368"  # "berth ssh", as ufw stores a comment
V4 = f"""*filter
### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment={SSH}
-A ufw-user-input -p tcp --dport 22 -j ufw-user-limit-accept
### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### allow tcp 9100 0.0.0.0/0 any 192.0.2.10 in
### tuple ### allow any any 0.0.0.0/0 any 0.0.0.0/0 in_eth1
COMMIT
"""
V6 = f"""### tuple ### limit tcp 22 ::/0 any ::/0 in comment={SSH}
### tuple ### allow tcp 80 ::/0 any ::/0 in
"""
SSH_RULE = {"rule": "limit", "proto": "tcp", "port": 22, "from": "any", "comment": "ssh"}


def rule(port, source="any", comment="", kind="allow"):
    return {"rule": kind, "proto": "tcp", "port": port, "from": source, "comment": comment}


def test_rules_in_place_are_not_missing():
    assert fw.firewall_missing([SSH_RULE], [V4, V6], "berth ") == []
    assert fw.firewall_missing([rule(80), rule(9100, "192.0.2.10/32")], [V4, V6]) == []


def test_a_rule_from_anywhere_needs_both_families():
    assert fw.firewall_missing([SSH_RULE], [V4, ""], "berth ") == [SSH_RULE]


def test_a_rule_from_an_address_needs_its_own_family_only():
    assert fw.firewall_missing([rule(9100, "192.0.2.10")], [V4, ""]) == []
    v6_source = rule(9100, "2001:db8::/64")
    assert fw.firewall_missing([v6_source], [V4, V6]) == [v6_source]


def test_a_changed_comment_or_kind_is_missing():
    assert fw.firewall_missing([dict(SSH_RULE, comment="admin")], [V4, V6], "berth ")
    assert fw.firewall_missing([dict(SSH_RULE, rule="allow")], [V4, V6], "berth ")


def test_undeclared_rules_include_the_inexpressible():
    undeclared = fw.firewall_undeclared(fw.firewall_ufw_rules([V4, V6]), [SSH_RULE, rule(80)])
    assert [r.get("port", r.get("tuple")) for r in undeclared] == [
        "9100", "allow any any 0.0.0.0/0 any 0.0.0.0/0 in_eth1"]


def test_settings_files():
    text = 'IPV6=yes\n# DEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_INPUT_POLICY="DROP"\nLOGLEVEL=low\n'
    assert fw.firewall_ufw_settings(text) == {
        "IPV6": "yes", "DEFAULT_INPUT_POLICY": "DROP", "LOGLEVEL": "low"}


def test_sysctl_settings_missing():
    text = ("#net/ipv4/tcp_syncookies=1\nnet/ipv4/tcp_syncookies=0\n"
            "net/ipv4/conf/all/rp_filter=0\nnet/ipv4/conf/all/rp_filter=1\n"
            "net.ipv4.conf.all.log_martians = 1\n")
    wanted = {"net.ipv4.tcp_syncookies": 1, "net.ipv4.conf.all.rp_filter": 1,
              "net.ipv4.conf.all.log_martians": 1, "net.ipv4.conf.all.forwarding": 0}
    # commented out, or set to another value, or absent: missing; the last line counts
    assert fw.firewall_sysctl_missing(wanted, text) == {
        "net.ipv4.tcp_syncookies": 1, "net.ipv4.conf.all.forwarding": 0}

