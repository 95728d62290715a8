"""berth.stack.apt_present: which packages dpkg-query's answer leaves to apt."""

import importlib.util
import pathlib

PLUGIN = (pathlib.Path(__file__).parent.parent / "collections" / "ansible_collections" / "berth"
          / "stack" / "plugins" / "action" / "apt_present.py")
_spec = importlib.util.spec_from_file_location("apt_present", PLUGIN)
apt_present = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(apt_present)


def test_all_installed_leaves_nothing():
    out = "ii |curl\nii |ca-certificates\n"
    assert apt_present.missing_packages(["curl", "ca-certificates"], out) == []


def test_absent_half_installed_and_removed_are_missing():
    # rc: removed, its configuration kept; iU: unpacked, not configured; sl: unknown to dpkg
    out = "ii |curl\nrc |nginx\niU |redis-server\n"
    assert apt_present.missing_packages(["curl", "nginx", "redis-server", "sl"], out) == [
        "nginx", "redis-server", "sl"]


def test_nothing_read_means_everything_missing():
    assert apt_present.missing_packages(["curl"], "") == ["curl"]
