"""The command line as people use it: pipes, files, formats, exit codes, hostile input."""

import json
import os
import subprocess
import time

from helpers import BIN, ROOT, cached, run, text_model, tmpdir


def model():
    def make():
        d = os.path.join(tmpdir(), "text")
        text_model(d, seed=1)
        return d
    return cached("cli-text-model", make)


def test_help_and_version():
    p = run(["--help"], check=0)
    for opt in (b"--model", b"--beam", b"--nbest", b"--max-length", b"--threads", b"--input", b"--output",
                b"--format", b"Exit status"):
        assert opt in p.stdout, opt
    assert run(["--version"], check=0).stdout.startswith(b"fanyi ")


def test_usage_errors_exit_1():
    for args in (["--beam", "0"], ["--beam", "x"], ["--no-such-option"], ["--input", "bytes"],
                 ["--beam", "2", "--nbest", "3"], ["--format", "xml"]):
        p = run(["-m", model()] + args, b"", check=1)
        assert p.stderr and not p.stdout, args


def test_text_in_text_out_one_line_per_line():
    src = "A man is riding a bike.\n\nTwo dogs play.\n   \nA girl.\n"
    p = run(["-m", model(), "--beam", "2"], src, check=0)
    out = p.stdout.decode().split("\n")
    assert len(out) == 6 and out[1] == "" and out[3] == "" and out[-1] == "", out
    assert p.stderr == b""


def test_same_output_from_file_stdin_and_dash():
    d = tmpdir()
    path = os.path.join(d, "in.txt")
    open(path, "w").write("a dog runs\nthe people are walking\n")
    a = run(["-m", model(), path], check=0).stdout
    b = run(["-m", model()], open(path, "rb").read(), check=0).stdout
    c = run(["-m", model(), "-"], open(path, "rb").read(), check=0).stdout
    two = run(["-m", model(), path, path], check=0).stdout
    assert a == b == c and two == a + a and a.count(b"\n") == 2


def test_output_file_option():
    d = tmpdir()
    out = os.path.join(d, "out.txt")
    p = run(["-m", model(), "-o", out], "a man\nthe woman\n", check=0)
    assert p.stdout == b"" and open(out, "rb").read().count(b"\n") == 2


def test_crlf_and_missing_final_newline():
    a = run(["-m", model()], b"a dog\r\nthe cat\r\n", check=0).stdout
    b = run(["-m", model()], b"a dog\nthe cat", check=0).stdout
    assert a == b and a.count(b"\n") == 2


def test_nul_bytes_and_invalid_utf8_keep_line_count():
    data = b"a\x00b\n\xff\xfe broken\nfine line\n"
    p = run(["-m", model()], data, check=0)
    assert p.stdout.count(b"\n") == 3
    assert b"standard input:2: invalid UTF-8" in p.stderr
    assert b":1:" not in p.stderr and b":3:" not in p.stderr


def test_empty_input_gives_empty_output():
    p = run(["-m", model()], b"", check=0)
    assert p.stdout == b"" and p.stderr == b""


def test_jsonl_tsv_scores_formats():
    p = run(["-m", model(), "--beam", "3", "--nbest", "2", "--format", "jsonl"], "a man\n\n", check=0)
    rows = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert rows[0]["source"] == "a man" and len(rows[0]["nbest"]) == 2
    assert rows[0]["translation"] == rows[0]["nbest"][0]["translation"]
    assert rows[0]["nbest"][0]["score"] >= rows[0]["nbest"][1]["score"]
    assert rows[1] == {"source": "", "translation": "", "score": 0, "nbest": []}
    p = run(["-m", model(), "--format", "tsv"], "a\tman\n", check=0)
    src, hyp = p.stdout.decode().rstrip("\n").split("\t")
    assert src == "a man"
    p = run(["-m", model(), "--scores"], "a man\n", check=0)
    score, _ = p.stdout.decode().rstrip("\n").split("\t", 1)
    assert float(score) <= 0


def test_nbest_marian_format():
    p = run(["-m", model(), "--beam", "3", "--nbest", "3"], "a man\nthe dog\n", check=0)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 6
    assert [line.split(" ||| ")[0] for line in lines] == ["0", "0", "0", "1", "1", "1"]


def test_ids_input_and_output():
    ids = run(["spm-encode", "--model", os.path.join(model(), "spm.model"), "--output_format=id"], "a man\n",
              check=0).stdout
    by_text = run(["-m", model(), "--output", "ids"], "a man\n", check=0).stdout
    by_ids = run(["-m", model(), "--input", "ids", "--output", "ids"], ids, check=0).stdout
    assert by_text == by_ids and by_text.strip()


def test_missing_model_and_unreadable_input_exit_2():
    p = run(["-m", os.path.join(tmpdir(), "nope")], b"a\n", check=2)
    assert b"config.json" in p.stderr
    p = run(["-m", model(), os.path.join(tmpdir(), "missing.txt")], check=2)
    assert b"missing.txt" in p.stderr and b"No such file" in p.stderr
    d = tmpdir()
    p = run(["-m", model(), d], check=2)  # a directory is not readable as lines
    assert d.encode() in p.stderr


def test_full_disk_is_an_error():
    p = run(["-m", model(), "-o", "/dev/full"], b"a man\n", check=2)
    assert b"/dev/full" in p.stderr and b"No space" in p.stderr


def test_reader_going_away_is_quiet():
    src = b"a man rides a horse\n" * 3000
    proc = subprocess.Popen(f"'{BIN}' -m '{model()}' --beam 1 | head -1", shell=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(src, timeout=300)
    assert out.count(b"\n") == 1 and err == b"", err


def test_streaming_flushes_each_line():
    proc = subprocess.Popen([BIN, "-m", model(), "--beam", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        proc.stdin.write(b"a man\n")
        proc.stdin.flush()
        t = time.time()
        first = proc.stdout.readline()
        assert first.endswith(b"\n") and time.time() - t < 60
        proc.stdin.write(b"the dog\n")
        proc.stdin.flush()
        assert proc.stdout.readline().endswith(b"\n")
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_default_model_from_environment():
    a = run([], "a man\n", check=0, env={"FANYI_MODEL": model()}).stdout
    b = run(["-m", model()], "a man\n", check=0).stdout
    assert a == b


def test_sample_file_is_present():
    assert os.path.getsize(os.path.join(ROOT, "data", "sample.en")) > 0


def test_long_line_is_split_and_rejoined_on_one_line():
    sentence = "A man rides a horse on the beach. "
    p = run(["-m", model(), "--beam", "1", "--max-length", "4"], (sentence * 30).strip() + "\nshort\n", check=0)
    assert p.stdout.count(b"\n") == 2
    assert b"standard input:1: line longer than the model allows; translated in pieces" in p.stderr
    assert b":2:" not in p.stderr
    # No sentence boundary at all: cut at the token limit.
    p = run(["-m", model(), "--beam", "1", "--max-length", "2"], "dog " * 400 + "\n", check=0)
    assert p.stdout.count(b"\n") == 1 and b"in pieces" in p.stderr


def test_split_sentences_translates_each_sentence():
    text = "A man rides a horse. Two dogs play! 我爱你。你好。"
    whole = run(["-m", model(), "--split-sentences", "--output", "ids"], text + "\n", check=0).stdout
    parts = ["A man rides a horse. ", "Two dogs play! ", "我爱你。", "你好。"]
    each = run(["-m", model(), "--output", "ids"], "".join(p.strip() + "\n" for p in parts), check=0).stdout
    assert whole.split() == each.split()
    assert run(["-m", model(), "--split-sentences"], text + "\n", check=0).stderr == b""


def test_sentence_boundaries():
    from helpers import BUILD
    import subprocess as sp
    p = sp.run([os.path.join(BUILD, "unit_tests")], capture_output=True, text=True)
    assert "ok test_sentence_ends" in p.stdout, p.stdout


def test_progress_on_request_and_silent_otherwise():
    d = tmpdir()
    path = os.path.join(d, "in.txt")
    open(path, "w").write("a man\n" * 50)
    quiet = run(["-m", model(), path], check=0)
    assert quiet.stderr == b""
    loud = run(["-m", model(), "--progress", path], check=0)
    assert b"50 lines" in loud.stderr and b"100%" in loud.stderr and quiet.stdout == loud.stdout


def test_list_models_and_lookup_by_name():
    d = tmpdir()
    bindir = os.path.join(d, "bin")
    models = os.path.join(d, "share", "fanyi", "models")
    os.makedirs(bindir)
    os.makedirs(models)
    import shutil
    shutil.copy(BIN, os.path.join(bindir, "fanyi"))
    shutil.copytree(model(), os.path.join(models, "toy"))
    shutil.copytree(model(), os.path.join(models, "en-de"))
    exe = os.path.join(bindir, "fanyi")
    p = subprocess.run([exe, "--list-models"], capture_output=True, text=True)
    assert p.returncode == 0 and "toy" in p.stdout and "en-de" in p.stdout and "(default)" in p.stdout
    by_name = subprocess.run([exe, "-m", "toy"], input=b"a man\n", capture_output=True).stdout
    default = subprocess.run([exe], input=b"a man\n", capture_output=True).stdout
    assert by_name == default == run(["-m", model()], "a man\n", check=0).stdout
