"""Never lose a user's data: outputs that are inputs, failed and interrupted runs, valid JSON,
non-finite weights, options checked before any input is read, no fixed limits on input."""

import json
import math
import os
import shutil
import signal
import stat
import subprocess
import time

from fanyi_ref.modeldir import read_safetensors, write_safetensors
from helpers import BIN, ROOT, Skip, cached, random_model, run, text_model, tmpdir


def model():
    def make():
        d = os.path.join(tmpdir(), "text")
        text_model(d, seed=3)
        return d
    return cached("safety-text-model", make)


def leftovers(d):
    return [n for n in os.listdir(d) if ".fanyi-" in n]


def test_output_file_that_is_an_input_is_refused_and_kept():
    d = tmpdir()
    x = os.path.join(d, "x.txt")
    open(x, "w").write("a man rides a horse\n")
    os.link(x, os.path.join(d, "hard.txt"))
    os.symlink(x, os.path.join(d, "soft.txt"))
    other = os.path.join(d, "other.txt")
    open(other, "w").write("two dogs\n")
    for args in (["-o", x, x], ["-o", x, other, x], ["-o", os.path.join(d, "hard.txt"), x],
                 ["-o", os.path.join(d, "soft.txt"), x], ["-o", x, "-"]):
        stdin = open(x, "rb").read() if args[-1] == "-" else b""
        if args[-1] == "-":
            p = subprocess.run([BIN, "-m", model()] + args, stdin=open(x, "rb"), capture_output=True)
        else:
            p = run(["-m", model()] + args, stdin)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert b"is also the output" in p.stderr and p.stdout == b"", p.stderr
        assert open(x).read() == "a man rides a horse\n", args
    # Standard output appended to the input file (fanyi x >> x) would read its own output forever.
    with open(x, "ab") as out:
        p = subprocess.run([BIN, "-m", model(), x], stdout=out, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 1 and b"standard output" in p.stderr, p.stderr
    assert open(x).read() == "a man rides a horse\n"


def test_failed_run_leaves_the_old_output_file():
    d = tmpdir()
    out = os.path.join(d, "out.txt")
    open(out, "w").write("yesterday's translations\n")
    os.chmod(out, 0o640)
    p = run(["-m", model(), "--input", "ids", "-o", out], b"5 6\nnot ids\n", check=3)
    assert b"nothing written" in p.stderr
    assert open(out).read() == "yesterday's translations\n" and not leftovers(d)
    run(["-m", model(), "-o", out], b"a man\n", check=0)
    assert open(out).read().count("\n") == 1 and "yesterday" not in open(out).read()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and not leftovers(d)
    # A read-only output file is refused as the shell would refuse it, not replaced.
    if os.geteuid() != 0:
        os.chmod(out, 0o440)
        run(["-m", model(), "-o", out], b"a man\n", check=2)


def test_output_through_a_symlink_replaces_its_target():
    d = tmpdir()
    target = os.path.join(d, "target.txt")
    open(target, "w").write("old\n")
    link = os.path.join(d, "link.txt")
    os.symlink(target, link)
    run(["-m", model(), "-o", link], b"a man\n", check=0)
    assert os.path.islink(link) and open(target).read() != "old\n" and not leftovers(d)


def test_interrupted_run_leaves_the_old_output_and_no_temporary_file():
    d = tmpdir()
    out = os.path.join(d, "out.txt")
    open(out, "w").write("keep me\n")
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([BIN, "-m", model(), "-o", out], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"a man rides a horse\n")
        p.stdin.flush()
        deadline = time.time() + 30
        while not leftovers(d) and time.time() < deadline:
            time.sleep(0.02)
        assert leftovers(d), "the temporary output file never appeared"
        p.send_signal(sig)
        p.wait(timeout=30)
        p.stdin.close()
        assert p.returncode == -sig, p.returncode
        assert open(out).read() == "keep me\n" and not leftovers(d), (sig, leftovers(d))


def test_jsonl_is_valid_json_in_valid_utf8():
    src = b"caf\xc3\xa9 \xff\xfe dog \xed\xa0\x80 \xc0\xaf\x7f \"q\" \\ \x01\n"
    p = run(["-m", model(), "--format", "jsonl", "-b", "2", "-n", "2"], src, check=0)
    line = p.stdout.decode("utf-8")  # strict: raises on invalid UTF-8
    obj = json.loads(line)
    assert obj["source"].startswith("café \ufffd\ufffd dog \ufffd\ufffd\ufffd \ufffd\ufffd\x7f \"q\" \\ \x01"), obj
    assert math.isfinite(obj["score"]) and len(obj["nbest"]) == 2


def huge_weights_model():
    """Finite weights so large that every activation overflows: scores are NaN or infinite."""
    def make():
        d = os.path.join(tmpdir(), "huge")
        text_model(d, seed=4, weight_std=1e30)
        return d
    return cached("safety-huge-model", make)


def test_non_finite_scores_are_json_null():
    p = run(["-m", huge_weights_model(), "--format", "jsonl", "-b", "2", "-n", "2"], b"a man\n", check=0)
    obj = json.loads(p.stdout.decode("utf-8"), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    scores = [obj["score"]] + [h["score"] for h in obj["nbest"]]
    assert None in scores, obj


def poisoned(dtype, tensor, index, value):
    d = os.path.join(tmpdir(), f"poison-{dtype}")
    random_model(d, seed=5, dtype=dtype)
    path = os.path.join(d, "model.safetensors")
    t = read_safetensors(path)
    flat = t[tensor].view(-1)
    flat[index] = value
    write_safetensors(path, t)
    return d


def test_non_finite_weights_are_refused_naming_the_tensor():
    for dtype in ("f32", "f16"):
        for value, index in ((float("nan"), 7), (float("inf"), 0), (float("-inf"), 40)):
            name = "decoder.layers.1.ffn.fc1.weight"
            d = poisoned(dtype, name, index, value)
            p = run(["-m", d, "--input", "ids"], b"5 6 7\n", check=2)
            err = p.stderr.decode()
            assert name in err and "non-finite" in err and p.stdout == b"", err
    d = poisoned("f32", "encoder.layers.0.self_attn_norm.bias", 3, float("nan"))
    err = run(["-m", d, "--input", "ids"], b"5\n", check=2).stderr.decode()
    assert "encoder.layers.0.self_attn_norm.bias" in err and "index 3" in err, err
    # A tensor stacked with others at load (q, k, v as one product) is checked too.
    d = poisoned("f16", "decoder.layers.0.self_attn.k.weight", 33, float("inf"))
    err = run(["-m", d, "--input", "ids"], b"5\n", check=2).stderr.decode()
    assert "decoder.layers.0.self_attn.k.weight" in err and "row 1, column 1" in err, err


def test_invalid_options_are_refused_before_reading_input():
    # An empty input must not hide a bad option: every check happens before the first line.
    for args in (["--threads", "257"], ["--threads", "0"], ["-b", "2", "-n", "3"], ["-n", "5"],
                 ["--length-penalty", "inf"], ["--length-penalty", "nan"], ["--max-length-ratio", "inf"],
                 ["--beam", "1025"]):
        p = run(["-m", model()] + args, b"", check=1)
        assert p.stderr and p.stdout == b"", args
    # The model's default beam is 4: --nbest 5 without --beam is checked against it.
    assert b"beam size 4" in run(["-m", model(), "-n", "5"], b"", check=1).stderr
    # One range, stated once: --help gives the same limits the parser and the library enforce.
    help_text = run(["--help"], check=0).stdout
    assert b"1 to 256" in help_text and b"1 to 1024" in help_text
    run(["-m", model(), "--threads", "256"], b"a man\n", check=0)


def test_spm_decode_has_no_piece_limit():
    import sentencepiece as spm
    fixture = os.path.join(ROOT, "tests", "fixtures", "unigram.model")
    sp = spm.SentencePieceProcessor(model_file=fixture)
    pieces = sp.encode("a man rides a horse and two dogs play in the park. " * 600, out_type=str)
    assert len(pieces) > 5000
    p = run(["spm-decode", "--model", fixture], (" ".join(pieces) + "\n").encode(), check=0)
    assert p.stdout.decode() == sp.decode_pieces(pieces) + "\n"


def test_asan_build_finds_bundled_models_by_name():
    """Every binary the build makes (release or sanitizer) finds models/NAME from any directory."""
    if not os.path.isdir(os.path.join(ROOT, "models", "en-de")):
        raise Skip("models/en-de is absent")
    p = subprocess.run([BIN, "--list-models"], capture_output=True, cwd="/", timeout=60)
    assert b"en-de" in p.stdout, p.stdout
    p = subprocess.run([BIN, "-m", "en-de", "--input", "ids", "--output", "ids"], input=b"5 6 7\n",
                       capture_output=True, cwd="/", timeout=120)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr


def fake_apt_tree(behaviour):
    """A PATH with no compiler (so packages are missing) and an apt-get that acts as told."""
    d = tmpdir()
    for tool in ("id", "date", "grep", "tail", "sed", "mktemp", "rm", "sleep", "cat"):
        real = shutil.which(tool)
        if real:
            os.symlink(real, os.path.join(d, tool))
    count = os.path.join(d, "calls")
    with open(os.path.join(d, "apt-get"), "w") as f:
        f.write(f"""#!/bin/sh
echo "$@" >> {count}
n=$(grep -c . {count})
{behaviour}
""")
    os.chmod(os.path.join(d, "apt-get"), 0o755)
    return d, count


def ensure_deps(path_dir, **env):
    full = {"PATH": path_dir, "FANYI_LOCK_POLL": "0.1", **env}
    return subprocess.run(["/bin/sh", os.path.join(ROOT, "tools", "ensure-deps.sh"), "build"], env=full,
                          capture_output=True, timeout=60)


LOCKED = 'echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2; exit 100'


def test_ensure_deps_waits_for_the_dpkg_lock():
    if os.geteuid() != 0:
        raise Skip("ensure-deps.sh installs only as root")
    d, calls = fake_apt_tree(f'[ "$n" -le 2 ] && {{ {LOCKED}; }}; exit 0')
    p = ensure_deps(d)
    assert p.returncode == 0, p.stderr
    assert b"waiting" in p.stderr and b"dpkg lock" in p.stderr, p.stderr
    lines = open(calls).read().splitlines()
    assert len(lines) == 3 and all("DPkg::Lock::Timeout" in ln and "install" in ln for ln in lines), lines


def test_ensure_deps_gives_up_on_the_lock_and_says_why():
    if os.geteuid() != 0:
        raise Skip("ensure-deps.sh installs only as root")
    d, _ = fake_apt_tree(LOCKED)
    p = ensure_deps(d, FANYI_LOCK_WAIT="1")
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "gave up" in err and "dpkg lock" in err and "held by process 4242" in err, err
    assert "apt-get install -y --no-install-recommends" in err, err
    # Any other failure shows apt's own words rather than hiding them.
    d, _ = fake_apt_tree('echo "E: Unable to locate package libcjson-dev" >&2; exit 100')
    err = ensure_deps(d).stderr.decode()
    assert "Unable to locate package libcjson-dev" in err, err
