"""berth.stack.known_settings: every setting berth ships is read; a misspelt one is caught."""

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).parent.parent
PLUGIN = (ROOT / "collections" / "ansible_collections" / "berth" / "stack" / "plugins" / "action"
          / "known_settings.py")
_spec = importlib.util.spec_from_file_location("known_settings", PLUGIN)
known_settings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(known_settings)

ROLES = str(ROOT / "roles")
PATTERN = known_settings.settings_pattern({"berth", *known_settings.role_names(ROLES)})
KNOWN = {name for text in known_settings.project_texts(ROLES) for name in PATTERN.findall(text)}


def settings_in(path):
    return set(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def test_every_shipped_setting_is_read_by_berth():
    shipped = set()
    for path in [ROOT / "group_vars" / "all.yml", *ROOT.glob("inventories/*/group_vars/**/*.yml")]:
        shipped |= settings_in(path)
    assert not known_settings.unknown_settings(shipped, KNOWN, PATTERN)


def test_misspelt_names_are_caught_with_a_suggestion():
    unknown = known_settings.unknown_settings(
        {"berth_domians", "nginx_client_max_bodysize", "berth_app_name", "my_own", "app_zzz"}, KNOWN, PATTERN)
    assert unknown == {"berth_domians": "berth_domains",
                       "nginx_client_max_bodysize": "nginx_client_max_body_size", "app_zzz": None}


def test_the_purge_setting_is_known():
    assert "berth_purge_apps" in KNOWN
    assert not known_settings.unknown_settings({"berth_purge_apps"}, KNOWN, PATTERN)
