"""The stack contract (group_vars/berth.yml): for several settings, every role that produces a
path, a name or a URL and every role that consumes it agree. Rendered by Ansible's own templar
from the repository's files (role defaults and vars under the settings, the contract above
them, as a play sees them), with no host."""

import json
import pathlib
import posixpath

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "tasks").is_dir())
LOADER = DataLoader()
# the collections' filters too (community.general's, as a play has them)
init_plugin_loader([str(ROOT / "collections")])


def load(path):
    return LOADER.load_from_file(str(path), trusted_as_template=True) or {} if path.exists() else {}


def render(settings, host="host1", groups=None, hosts=None):
    """The contract as HOST sees it in an inventory of GROUPS (default: HOST alone in berth),
    HOSTS giving each host's own variables."""
    groups = groups or {"berth": [host]}
    variables = {"inventory_hostname": host, "groups": {"all": groups["berth"], **groups}}
    for role in ROLES:
        variables.update(load(ROOT / "roles" / role / "defaults" / "main.yml"))
    for role in ROLES:
        variables.update(load(ROOT / "roles" / role / "vars" / "main.yml"))
    variables.update(load(ROOT / "group_vars" / "all.yml"))
    variables.update(settings)
    variables.update((hosts or {}).get(host, {}))
    variables.update(load(ROOT / "group_vars" / "berth.yml"))
    variables["hostvars"] = {name: {**variables, **own} if name == host else own
                             for name, own in (hosts or {host: {}}).items()}
    templar = Templar(loader=LOADER, variables=variables)
    return lambda name: templar.template(trust_as_template("{{ %s }}" % name))


SETTINGS = {
    "defaults": {},
    "another name, postgresql, remotes": {
        "berth_app_name": "shop", "berth_database": "postgresql", "backup_recovery_password_secret": "RECOVERY",
        "backup_remotes": [{"name": "s3", "type": "s3", "endpoint": "https://s3.example", "bucket": "b",
                            "access_key_id_secret": "S3_KEY_ID", "secret_access_key_secret": "S3_SECRET"},
                           {"name": "rest", "type": "rest", "url": "https://rest.example/shop",
                            "user": "shop", "password_secret": "REST_PASS"}]},
    "external database, media": {"berth_app_name": "my_app", "berth_database": "external",
                                 "berth_external_database_url": "postgresql://u:p@db/x",
                                 "berth_shared_public": {"/media/": "media"}},
    "moved paths, workers": {"berth_app_name": "web", "app_workers": [{"name": "mail", "command": "x"}],
                             "app_timers": [{"name": "nightly", "command": "y", "on_calendar": "daily"}],
                             "berth_layout_overrides": {"socket_dir": "/run/web-sockets", "home": "/opt/web",
                                                        "settings_dir": "/etc/web", "tls_dir": "/etc/ssl/web",
                                                        "acme_webroot": "/srv/acme",
                                                        "redis_socket_dir": "/run/web-redis"}},
}


@pytest.fixture(params=list(SETTINGS), name="v")
def rendered(request):
    return render(SETTINGS[request.param])


def test_one_account(v):
    names = {v(n) for n in ("base_app_user", "app_user", "app_service", "secrets_app_group", "postgresql_app_user",
                            "sqlite_app_user", "redis_app_user", "backup_app_user", "nginx_site_name",
                            "tls_cert_name")}
    assert names == {v("berth_app_name")}


def test_the_app_socket(v):
    assert v("nginx_upstream_socket") == v("app_socket")
    assert posixpath.dirname(v("app_socket")) == v("app_socket_dir")
    assert f"--unix-socket {v('app_socket')} " in v("backup_health_check_command")
    assert v("app_socket_group") == "www-data"


def test_the_home_and_its_parts(v):
    assert v("base_app_home") == v("app_home") == posixpath.dirname(v("app_shared_dir"))
    assert v("nginx_static_dir") == v("app_static_dir") == v("app_home") + "/current/static"
    assert v("app_shared_dir") == v("nginx_shared_dir") == v("backup_files_dir")
    assert v("app_shared_public_dirs") == list(v("nginx_shared_locations").values())


def test_the_secrets_file(v):
    assert v("backup_secrets_env_file") == v("secrets_env_file") == v("monitor_secrets_env_file")
    assert posixpath.dirname(v("app_secrets_env_file")) == v("secrets_dir")
    assert v("app_secrets_env_file") != v("secrets_env_file")
    assert posixpath.dirname(v("secrets_env_file")) == v("secrets_dir") == v("app_settings_dir")


def test_the_certificate(v):
    where = f"{v('tls_dir')}/{v('tls_cert_name')}"
    assert (v("nginx_ssl_certificate"), v("nginx_ssl_certificate_key")) == (f"{where}/fullchain.pem",
                                                                            f"{where}/privkey.pem")
    assert v("nginx_acme_webroot") == v("tls_acme_webroot")
    assert v("tls_domains") == v("nginx_domains") == v("berth_domains")


def test_the_database(v):
    derived = v("secrets_derived")
    if v("berth_database") == "sqlite":
        assert derived["DATABASE_URL"] == "sqlite:///" + v("sqlite_database_file")
        assert v("backup_sqlite_path") == v("sqlite_database_file")
        assert posixpath.dirname(v("sqlite_database_file")) == v("sqlite_data_dir")
        assert v("app_writable_paths") == [v("sqlite_data_dir")]
    elif v("berth_database") == "postgresql":
        user, database = v("postgresql_app_user"), v("postgresql_app_database")
        assert derived["DATABASE_URL"].startswith(f"postgresql://{user}_{{DATABASE_PASSWORD:id}}:")
        assert derived["DATABASE_URL"].endswith(f"@localhost:5432/{database}")
    else:
        assert "DATABASE_URL" not in derived
        assert v("secrets_provided")["DATABASE_URL"] == v("berth_external_database_url")
    assert v("backup_engine") == v("berth_database")


def test_redis(v):
    # the redis role's own template for its socket, the contract's for the app
    assert v("secrets_derived")["REDIS_URL"] == v("redis_url_template")
    assert posixpath.dirname(v("redis_socket")) == v("redis_socket_dir")


def test_the_alerts_go_through_the_apps_relay(v):
    for name in ("host", "port", "security", "ca_file", "user", "from"):
        assert v(f"monitor_smtp_{name}") == v(f"berth_smtp_{name}"), name
    assert v("monitor_alert_email") == v("berth_alert_email")


def test_berth_check_judges_the_backup_the_backup_role_runs(v):
    if v("berth_database") == "external":
        assert v("monitor_backup_status_file") == "" and v("monitor_backup_unit") == ""
        return
    assert v("monitor_backup_status_file") == v("backup_status_file")
    # the backup role's own names for its units (its vars/main.yml)
    assert v("monitor_backup_unit") == v("backup_unit") + ".service"
    assert v("monitor_backup_units") == [v("backup_unit") + ".service", v("backup_unit") + "-check.service"]
    assert v("backup_on_failure_units") == ["berth-check.service"]
    assert v("monitor_health_name") == v("nginx_domains")[0]


def test_berth_check_has_a_file_for_each_app(v):
    # an app's removal deletes berth_check_dir/NAME.json, the file its turn wrote
    assert v("monitor_app_name") == v("berth_app_name")
    assert v("monitor_check_dir") == v("berth_check_dir") == "/etc/berth/check.d"


def test_the_node_exporter_is_published_where_it_listens():
    v = render({"berth_node_exporter": True})
    assert v("nginx_basic_auth_proxies") == {"/metrics/node": f"http://{v('monitor_node_exporter_address')}/metrics"}
    assert render({})("nginx_basic_auth_proxies") == {}


def test_behind_a_trusted_proxy_fail2ban_bans_into_the_list_nginx_reads():
    v = render({"nginx_trusted_proxies": ["203.0.113.0/24"]})
    assert v("firewall_fail2ban_nginx_banlist") == v("nginx_banlist") != ""
    assert render({})("firewall_fail2ban_nginx_banlist") == render({})("nginx_banlist") == ""


SPLIT = {"berth": ["db", "web1", "web2"], "berth_db": ["db"], "berth_web": ["web1", "web2"]}
ADDRESSES = {"db": {"berth_private_address": "10.0.0.5"}, "web1": {"berth_private_address": "10.0.0.11"},
             "web2": {"berth_private_address": "10.0.0.12"}}


def split(host, **settings):
    return render({"berth_database": "postgresql", **settings}, host, SPLIT, ADDRESSES)


def test_one_host_holds_the_whole_stack():
    v = render({"berth_database": "postgresql"})
    assert v("berth_host_is_db") and v("berth_host_is_web") and not v("berth_database_remote")
    assert v("postgresql_remote_clients") == v("redis_remote_clients") == v("firewall_service_rules") == []
    assert v("secrets_leader_host") == ""
    # hosts of berth without the groups: each one its own stack
    v = render({"berth_database": "postgresql"}, "b", {"berth": ["a", "b"]}, {"a": {}, "b": {}})
    assert v("berth_db_host") == "b" and v("berth_web_hosts") == ["b"] and v("secrets_leader_host") == ""


def test_a_database_server_serves_the_web_servers_alone_over_tls():
    v = split("db", berth_database_clients=["10.0.1.0/24"], redis_tls_port=6390)
    assert v("berth_host_is_db") and not v("berth_host_is_web")
    assert v("postgresql_remote_clients") == v("redis_remote_clients") == ["10.0.0.11", "10.0.0.12", "10.0.1.0/24"]
    assert v("postgresql_listen_addresses") == v("redis_listen_addresses") == ["10.0.0.5"]
    assert v("firewall_service_rules") == [
        {"from": source, "port": 5432, "proto": "tcp", "rule": "allow", "comment": "postgresql client"}
        for source in ("10.0.0.11", "10.0.0.12", "10.0.1.0/24")] + [
        {"from": source, "port": 6390, "proto": "tcp", "rule": "allow", "comment": "redis client"}
        for source in ("10.0.0.11", "10.0.0.12", "10.0.1.0/24")]
    assert v("berth_backup_here") and v("monitor_backup_unit") and v("monitor_health_name") == ""
    assert not v("firewall_web") and v("firewall_web_rules") == []
    assert v("secrets_leader_host") == ""


def test_a_web_server_keeps_the_database_servers_secrets_and_pins_its_certificates():
    v = split("web2")
    assert v("berth_host_is_web") and not v("berth_host_is_db") and v("berth_database_remote")
    assert v("secrets_leader_host") == "db"
    assert v("firewall_web") and [rule["port"] for rule in v("firewall_web_rules")] == [80, 443]
    assert v("postgresql_remote_clients") == v("firewall_service_rules") == []
    derived = v("secrets_derived")
    assert derived["DATABASE_URL"] == (
        "postgresql://app_{DATABASE_PASSWORD:id}:{DATABASE_PASSWORD}@10.0.0.5:5432/app"
        f"?sslmode=verify-full&sslrootcert={v('berth_layout.postgresql_pin')}")
    assert derived["REDIS_URL"] == (
        f"rediss://app:{{REDIS_PASSWORD}}@10.0.0.5:6379/0?ssl_ca_certs={v('berth_layout.redis_pin')}")
    assert not v("berth_backup_here") and v("monitor_backup_unit") == "" and v("monitor_backup_remotes") == []
    # the certificates are where the database server's roles make them
    assert v("berth_postgresql_certificate") == v("postgresql_tls_certificate")
    assert v("berth_redis_certificate") == v("redis_tls_certificate")


BALANCED = {**SPLIT, "berth": SPLIT["berth"] + ["lb"], "berth_lb": ["lb"]}
LB_ADDRESSES = {**ADDRESSES, "lb": {"berth_private_address": "10.0.0.2"}}


def balanced(host, **settings):
    return render({"berth_database": "postgresql", **settings}, host, BALANCED, LB_ADDRESSES)


def test_a_balancer_answers_the_names_and_proxies_to_the_web_servers():
    v = balanced("lb", berth_backend_port=8081)
    assert v("berth_host_is_lb") and v("berth_host_is_front") and not v("berth_host_is_web")
    assert not v("berth_host_is_db") and not v("berth_database_remote") and v("secrets_leader_host") == "db"
    assert v("nginx_upstream_servers") == v("berth_backends") == ["10.0.0.11:8081", "10.0.0.12:8081"]
    assert v("nginx_backend_listen") == "" and v("nginx_backend_balancers") == []
    assert v("firewall_web") and v("firewall_service_rules") == []
    assert v("nginx_static_dir") == "" and v("nginx_shared_locations") == {}
    assert v("monitor_health_name") == v("berth_domains")[0] and not v("berth_backup_here")


def test_a_web_server_behind_the_balancer_serves_it_alone():
    v = balanced("web1", berth_shared_public={"/media/": "media"}, nginx_trusted_proxies=["203.0.113.0/24"])
    assert v("berth_behind_lb") and not v("berth_host_is_front") and v("berth_rolling")
    assert v("nginx_backend_listen") == "10.0.0.11:8080" and v("nginx_backend_balancers") == ["10.0.0.2"]
    assert v("nginx_upstream_servers") == [] and v("berth_backends") == ["10.0.0.11:8080", "10.0.0.12:8080"]
    assert not v("firewall_web") and v("firewall_service_rules") == [
        {"from": "10.0.0.2", "port": 8080, "proto": "tcp", "rule": "allow", "comment": "load balancer"}]
    assert v("nginx_static_dir") == v("berth_layout.static_dir") and v("nginx_shared_locations") == {"/media/": "media"}
    # the balancer's address is believed, not the proxies before it: the balancer's own job
    assert v("nginx_real_ip_from") == ["10.0.0.2"] and v("nginx_real_ip_from_header") == "X-Forwarded-For"
    assert v("nginx_banlist") == "" and v("monitor_health_name") == ""
    assert v("berth_database_remote") and v("secrets_leader_host") == "db"


def test_web_servers_without_a_balancer_ask_each_other_for_challenges():
    assert split("web1")("nginx_acme_peers") == ["10.0.0.12:80"]
    assert split("db")("nginx_acme_peers") == render({})("nginx_acme_peers") == []
    assert balanced("web1")("nginx_acme_peers") == balanced("lb")("nginx_acme_peers") == []


def test_one_web_server_behind_a_balancer_is_not_rolled():
    groups = {**BALANCED, "berth": ["db", "web1", "lb"], "berth_web": ["web1"]}
    v = render({"berth_database": "postgresql"}, "web1", groups, LB_ADDRESSES)
    assert v("berth_behind_lb") and not v("berth_rolling")


def test_the_units_a_restore_stops(v):
    units = v("backup_app_units")
    assert units[:2] == [v("app_service") + ".socket", v("app_service") + ".service"]
    assert units[2:] == ([u + ".service" for u in v("app_worker_units")]
                         + [u + ".timer" for u in v("app_timer_units")])


def test_moved_paths_move_every_consumer():
    v = render(SETTINGS["moved paths, workers"])
    assert v("nginx_upstream_socket") == "/run/web-sockets/web.sock"
    assert v("backup_files_dir") == "/opt/web/shared"
    assert v("backup_secrets_env_file") == "/etc/web/secrets.env"
    assert v("nginx_ssl_certificate") == "/etc/ssl/web/web/fullchain.pem"
    assert v("secrets_derived")["REDIS_URL"].startswith("unix://web:{REDIS_PASSWORD}@/run/web-redis/")


def test_every_required_input_is_assigned_by_the_contract():
    # of the roles the playbooks run (selfsigned is a part the postgresql and redis roles include)
    contract = set(load(ROOT / "group_vars" / "berth.yml"))
    playbooks = "".join(path.read_text() for path in (ROOT / "playbooks").rglob("*.yml"))
    for role in (role for role in ROLES if f"name: {role}\n" in playbooks):
        specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
        required = {name for name, spec in specs["main"]["options"].items() if spec.get("required")}
        assert required <= contract, f"{role}: not assigned by the contract: {sorted(required - contract)}"


def test_the_app_reads_none_of_nginx_s_and_the_backup_s_secrets(v):
    views = v("secrets_views")
    assert [view["path"] for view in views] == [v("app_secrets_env_file")]
    assert views[0]["group"] == v("app_user")
    others = {v("nginx_basic_auth_password_secret"), v("backup_restic_password_secret")}
    others |= {value for remote in v("backup_remotes") for key, value in remote.items() if key.endswith("_secret")}
    others |= {v("backup_recovery_password_secret")} - {""}
    assert set(views[0]["withhold"]) == others
    declared = {d["name"] for d in v("secrets_definitions") + v("secrets_extra_definitions")}
    assert {"JWT_SECRET", "DATABASE_PASSWORD", "REDIS_PASSWORD"} <= declared - others


def test_the_apps_a_run_takes_its_turns_for():
    assert render({})("berth_app_selection") == [{}], "no berth_apps: the one app of the settings"
    assert render({"app": "app"})("berth_app_selection") == [{}]
    assert render({"app": "other"})("berth_app_selection") == []
    apps = [{"berth_app_name": "site"}, {"berth_app_name": "admin", "berth_domains": ["admin.example"]}]
    assert render({"berth_apps": apps})("berth_app_selection") == apps
    assert render({"berth_apps": apps})("berth_app_names") == ["site", "admin"]
    assert render({"berth_apps": apps, "app": "admin"})("berth_app_selection") == apps[1:]


def test_apps_share_one_redis_each_with_its_own_keys():
    one = render({})
    assert one("redis_app_keys") == ["*"] and one("redis_app_channels") == ["*"]
    assert "REDIS_KEY_PREFIX" not in one("app_environment")
    apps = [{"berth_app_name": "site"}, {"berth_app_name": "admin"}]
    # the turn of "admin": its settings above the group's
    v = render({"berth_apps": apps, "berth_app_name": "admin"})
    assert v("redis_app_keys") == ["admin:*"] and v("redis_app_channels") == ["admin:*"]
    assert v("app_environment")["REDIS_KEY_PREFIX"] == "admin:"
    assert v("redis_kept_users") == ["site", "admin"]
    # one socket for all: its directory does not follow the app's name
    assert v("redis_socket") == one("redis_socket") == "/run/redis-berth/redis-server.sock"
    assert v("redis_app_group") == one("redis_app_group")

def test_the_record_names_what_each_role_left(v):
    record, name = v("berth_app_record"), v("berth_app_name")
    assert record["name"] == record["user"] == record["group"] == v("base_app_user") == name
    assert record["build_user"] == v("app_build_user")
    assert (record["home"], record["settings_dir"]) == (v("base_app_home"), v("secrets_dir"))
    assert record["backup_dir"] == v("backup_dir")
    assert record["status_dir"] == posixpath.dirname(v("backup_status_file"))
    # the roles' own names: the app's units (the workers' and timers' by pattern), the backup's
    assert record["units"] == [v("app_service") + ".socket", v("app_service") + ".service"]
    assert record["unit_patterns"] == [v("app_service") + "-worker-*.service", v("app_service") + "-timer-*.service",
                                       v("app_service") + "-timer-*.timer"]
    unit = v("backup_unit")
    assert record["backup_units"] == [unit + ".service", unit + "-alert.service", unit + ".timer",
                                      unit + "-check.service", unit + "-check.timer"]
    assert set(record["backup_files"]) == {v("backup_config_file"), v("backup_ping_file"), v("backup_known_hosts_file"),
                                           v("backup_ssh_key"), v("backup_ssh_key") + ".pub"}
    assert record["database"] == {"engine": v("berth_database"), "name": v("postgresql_app_database"),
                                  "owner": v("postgresql_app_user")}
    assert (record["cert_name"], record["tls_dir"]) == (v("tls_cert_name"), v("tls_dir"))
    assert record["site"] == v("nginx_site_name")
    assert record["check_file"] == f"/etc/berth/check.d/{name}.json"
    assert name not in v("berth_reserved_app_names")


def test_the_record_follows_moved_paths_and_holds_no_secret():
    v = render(SETTINGS["moved paths, workers"])
    record = v("berth_app_record")
    assert (record["home"], record["settings_dir"], record["tls_dir"]) == ("/opt/web", "/etc/web", "/etc/ssl/web")
    assert record["unit_patterns"][0] == "web-worker-*.service"
    v = render({**SETTINGS["another name, postgresql, remotes"], "backup_dir": "/srv/backups/shop"})
    assert v("berth_app_record")["backup_dir"] == "/srv/backups/shop"
    text = json.dumps(v("berth_app_record"))
    assert "{{" not in text and not any(secret in text for secret in ("PASSWORD", "SECRET", "://")), text


@pytest.mark.parametrize("settings", list(SETTINGS.values()), ids=list(SETTINGS))
def test_the_record_is_the_same_outside_the_roles(settings):
    """Written after the roles' turns, where their defaults and vars are out of sight."""
    variables = {**load(ROOT / "group_vars" / "all.yml"), **settings, **load(ROOT / "group_vars" / "berth.yml")}
    templar = Templar(loader=LOADER, variables=variables)
    outside = templar.template(trust_as_template("{{ berth_app_record }}"))
    assert outside == render(settings)("berth_app_record")


def test_a_role_skips_the_checks_the_preflight_ran_and_only_those():
    checked = render({"berth_preflight_checked": ["base", "app"]})
    assert checked("base_checked") is True and checked("app_checked") is True
    assert checked("nginx_checked") is False
    assert render({})("base_checked") is False, "no preflight in this run: every role checks"
    contract = set(load(ROOT / "group_vars" / "berth.yml"))
    for role in ROLES:
        if (ROOT / "roles" / role / "tasks" / "validate.yml").exists() and role != "firewall":
            assert f"{role}_checked" in contract, f"{role}: its checks run twice in a run"
