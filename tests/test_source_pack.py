"""berth.stack.source_pack: the release's artefact depends on the source's names, contents and
modes only, and is the tar the app role made before (the same release ids)."""

import importlib.util
import os
import pathlib
import subprocess
import tarfile

PLUGIN = (pathlib.Path(__file__).parent.parent / "collections" / "ansible_collections" / "berth"
          / "stack" / "plugins" / "action" / "source_pack.py")
_spec = importlib.util.spec_from_file_location("source_pack", PLUGIN)
source_pack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(source_pack)


def pack(src, dest, exclude=()):
    subprocess.run(source_pack.pack_command("dir", str(src), str(dest), list(exclude)), check=True)
    return source_pack.sha256(dest)


def test_the_command_is_the_former_tasks():
    assert source_pack.pack_command("dir", "/src", "/b/source.tar", [".git", "*.pyc"]) == [
        "tar", "--create", "--file", "/b/source.tar", "--format=gnu", "--sort=name", "--mtime=@0",
        "--owner=0", "--group=0", "--numeric-owner", "--mode=u+rwX,go+rX,go-w",
        "--exclude=.git", "--exclude=*.pyc", "--directory", "/src", "."]


def test_times_do_not_count_contents_and_modes_do(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "main.py").write_text("print('hi')\n")
    first = pack(src, tmp_path / "a.tar")
    os.utime(src / "pkg" / "main.py", (0, 1_000_000))
    assert pack(src, tmp_path / "b.tar") == first
    (src / "pkg" / "main.py").chmod(0o755)
    assert pack(src, tmp_path / "c.tar") != first
    (src / "pkg" / "main.py").chmod(0o644)
    (src / "pkg" / "main.py").write_text("print('ho')\n")
    assert pack(src, tmp_path / "d.tar") != first


def test_excluded_names_are_left_out(tmp_path):
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    (src / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (src / "app.py").write_text("")
    pack(src, tmp_path / "a.tar", ["__pycache__"])
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert sorted(tar.getnames()) == [".", "./app.py"]
