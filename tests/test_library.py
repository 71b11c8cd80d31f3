"""fanyi as a C library: installed like one, exporting its API alone, built against with pkg-config."""

import os
import subprocess

from helpers import BIN, ROOT, run, tmpdir


def installed_tree():
    dest = tmpdir()
    prefix = "/usr/local"
    p = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}", f"DESTDIR={dest}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return dest, prefix


def test_make_install_installs_the_library():
    dest, prefix = installed_tree()
    root = dest + prefix
    for f in ("include/fanyi.h", "lib/libfanyi.a", "lib/libfanyi.so.0.1.0", "lib/pkgconfig/fanyi.pc",
              "share/man/man3/fanyi.3"):
        assert os.path.isfile(os.path.join(root, f)), f
    assert os.readlink(os.path.join(root, "lib", "libfanyi.so.0")) == "libfanyi.so.0.1.0"
    assert os.readlink(os.path.join(root, "lib", "libfanyi.so")) == "libfanyi.so.0"
    soname = subprocess.run(["readelf", "-d", os.path.join(root, "lib", "libfanyi.so.0.1.0")], capture_output=True,
                            text=True).stdout
    assert "Library soname: [libfanyi.so.0]" in soname
    # Only the API is exported: no fy_* internals, no helper that could clash with a program's own.
    nm = subprocess.run(["nm", "-D", "--defined-only", os.path.join(root, "lib", "libfanyi.so.0.1.0")],
                        capture_output=True, text=True).stdout.split("\n")
    names = [line.split()[-1] for line in nm if line.strip()]
    assert names and all(n.startswith("fanyi_") for n in names), [n for n in names if not n.startswith("fanyi_")]


def test_example_builds_against_the_installed_tree_with_pkg_config():
    dest, prefix = installed_tree()
    root = dest + prefix
    env = dict(os.environ, PKG_CONFIG_SYSROOT_DIR=dest, PKG_CONFIG_PATH=os.path.join(root, "lib", "pkgconfig"))
    work = tmpdir()
    # Only the installed tree: the example is copied away from the sources, and the include path
    # and library come from pkg-config.
    src = os.path.join(work, "translate.c")
    open(src, "w").write(open(os.path.join(ROOT, "examples", "translate.c")).read())
    exe = os.path.join(work, "translate")
    p = subprocess.run(f"cc -Wall -Wextra -Werror translate.c $(pkg-config --cflags --libs fanyi) -o {exe}",
                       shell=True, cwd=work, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    model = os.path.join(root, "share", "fanyi", "models", "en-de")
    lines = "A man rides a horse.\n\nTwo dogs play in the snow.\n" * 20
    p = subprocess.run([exe, model], input=lines.encode(), capture_output=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "lib")))
    assert p.returncode == 0, p.stderr
    assert p.stdout == run(["-m", model], lines, check=0).stdout and p.stdout.count(b"\n") == 60
    ldd = subprocess.run(["ldd", exe], capture_output=True, text=True,
                         env=dict(os.environ, LD_LIBRARY_PATH=os.path.join(root, "lib"))).stdout
    assert os.path.join(root, "lib", "libfanyi.so.0") in ldd, ldd


def test_cli_uses_the_public_header_only():
    """cli/ includes fanyi.h and its own files, nothing from src/ (the Makefile gives it no path there)."""
    for name in os.listdir(os.path.join(ROOT, "cli")):
        text = open(os.path.join(ROOT, "cli", name)).read()
        includes = [line.split('"')[1] for line in text.splitlines() if line.startswith('#include "')]
        assert set(includes) <= {"fanyi.h", "lineio.h"}, (name, includes)
    assert os.path.exists(BIN)
