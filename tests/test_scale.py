"""Hostile sizes, install, sharding with GNU parallel, and leak checking."""

import os
import shutil
import subprocess

from helpers import BIN, ROOT, Skip, cached, run, text_model, tmpdir


def model():
    def make():
        d = os.path.join(tmpdir(), "text")
        text_model(d, seed=1, max_positions=32, max_length=4)
        return d
    return cached("scale-text-model", make)


def _peak_rss_kb(args, stdin_path):
    """Runs fanyi under /usr/bin/time-like accounting: returns (exit code, peak RSS in KB, stdout lines)."""
    with open(stdin_path, "rb") as inp:
        p = subprocess.Popen([BIN] + args, stdin=inp, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: p.stdout.read(1 << 16), b""))
        _, status, usage = os.wait4(p.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss, lines


def test_many_short_lines_stream_in_flat_memory():
    d = tmpdir()
    small, big = os.path.join(d, "small.txt"), os.path.join(d, "big.txt")
    open(small, "w").write("a man\n" * 20000)
    open(big, "w").write("a man\n" * 200000)
    args = ["-m", model(), "--beam", "1", "--max-length", "1", "--threads", "1"]
    rc1, rss_small, n1 = _peak_rss_kb(args, small)
    rc2, rss_big, n2 = _peak_rss_kb(args, big)
    assert rc1 == rc2 == 0 and n1 == 20000 and n2 == 200000
    # Ten times the input may not cost more than a few MB more: input is streamed, never slurped.
    assert rss_big < rss_small + 8 * 1024, (rss_small, rss_big)


def test_ten_megabyte_single_line():
    d = tmpdir()
    path = os.path.join(d, "huge.txt")
    with open(path, "w") as f:
        f.write("the dog " * (10 * 1024 * 1024 // 8) + "\nafter\n")
    p = subprocess.run([BIN, "-m", model(), "--beam", "1", "--max-length", "1", path], capture_output=True,
                       timeout=900)
    assert p.returncode == 0 and p.stdout.count(b"\n") == 2, p.stderr[-500:]
    assert b"huge.txt:1: line longer than the model allows" in p.stderr


def test_make_install_and_installed_binary_finds_its_model():
    dest = tmpdir()
    prefix = "/opt/fanyi-test"
    p = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}", f"DESTDIR={dest}"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    root = dest + prefix
    for f in ("bin/fanyi", "share/man/man1/fanyi.1", "share/man/man5/fanyi-model.5"):
        assert os.path.exists(os.path.join(root, f)), f
    installed_models = os.path.join(root, "share", "fanyi", "models")
    if not os.path.exists(os.path.join(installed_models, "en-de", "config.json")):
        raise AssertionError("make install did not install the default model")
    out = subprocess.run([os.path.join(root, "bin", "fanyi"), "--list-models"], capture_output=True, text=True)
    assert "en-de" in out.stdout and installed_models in out.stdout.replace("/./", "/")


def test_gnu_parallel_sharding_is_byte_identical():
    if not shutil.which("parallel"):
        raise AssertionError("GNU parallel is missing (make test installs it: apt-get install parallel)")
    d = tmpdir()
    path = os.path.join(d, "in.txt")
    words = ["a man", "two dogs play in the snow", "the woman", "", "children are running", "a red car"]
    open(path, "w").write("".join(words[i % len(words)] + f" {i % 7}\n" for i in range(600)))
    single = run(["-m", model(), "--beam", "2", path], check=0).stdout
    sharded = subprocess.run(f"parallel --will-cite --pipe -k -N 37 -j 3 '{BIN}' -m '{model()}' --beam 2 < '{path}'",
                             shell=True, capture_output=True)
    assert sharded.returncode == 0, sharded.stderr
    assert sharded.stdout == single and single.count(b"\n") == 600


def test_valgrind_reports_no_leak():
    if not shutil.which("valgrind"):
        raise Skip("valgrind is not installed (apt-get install valgrind)")
    if os.environ.get("FANYI_BUILD", "").endswith("asan"):
        raise Skip("valgrind and AddressSanitizer do not mix; the release build is checked instead")
    p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                        "--error-exitcode=99", BIN, "-m", model(), "--beam", "2"],
                       input=b"a man\n\nthe dog runs\n", capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert b"definitely lost: 0" in p.stderr or b"All heap blocks were freed" in p.stderr
