"""fanyi get: a MarianMT model from a hub, served here by a local HTTP server in the hub's URL layout.

The server answers {endpoint}/{repo}/resolve/{revision}/{file} as the Hugging Face hub does: small
files directly, weights through a redirect whose headers carry X-Linked-Size and X-Linked-Etag (the
sha256), Range requests with 206. It can drop a connection part-way, to test resuming.
"""

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

from helpers import BIN, ROOT, run, tmpdir

LFS = ("model.safetensors", "pytorch_model.bin")


class Hub:
    def __init__(self, repos):
        self.repos = repos  # repo -> {filename: path}
        self.drop_after = None  # bytes after which a weights download is cut (None: never)
        self.drops_left = 0
        self.log = []  # (method, path, Range header)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body):
                hub.log.append((self.command, self.path, self.headers.get("Range")))
                parts = self.path.split("/")
                if parts[1] == "cdn":  # where weights are redirected, as the hub sends LFS files to its CDN
                    return self.send_file(hub.lfs[parts[2]], body)
                repo, file = "/".join(parts[1:3]), parts[-1]
                path = hub.repos.get(repo, {}).get(file)
                if len(parts) != 6 or parts[3] != "resolve" or not path:
                    self.send_response(404 if repo in hub.repos else 401)
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if file in LFS:
                    data = open(path, "rb").read()
                    key = hashlib.sha256(data).hexdigest()
                    hub.lfs[key] = path
                    self.send_response(302)
                    self.send_header("Location", f"/cdn/{key}")
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("X-Linked-Etag", f'"{key}"')
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                self.send_file(path, body)

            def send_file(self, path, body):
                data = open(path, "rb").read()
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        return self.end_headers()
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if not body:
                    return
                chunk = data[start:]
                if hub.drop_after is not None and hub.drops_left > 0 and self.path.startswith("/cdn/"):
                    hub.drops_left -= 1
                    self.wfile.write(chunk[: hub.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-file
                    return
                self.wfile.write(chunk)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that gives up mid-file (the full-disk test) is expected

        self.lfs = {}
        self.server = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def reference_checkpoint():
    """A MarianMT checkpoint in the hub's layout (pytorch_model.bin): the committed tiny fixture."""
    return os.path.join(ROOT, "tests", "fixtures", "marian-tiny")


def weights_size():
    return os.path.getsize(os.path.join(reference_checkpoint(), "pytorch_model.bin"))


def repo_files(ckpt, drop=()):
    return {n: os.path.join(ckpt, n) for n in os.listdir(ckpt) if n not in drop}


def get(hub, home, *args, check=None):
    env = {"HF_ENDPOINT": hub.endpoint, "XDG_DATA_HOME": os.path.join(home, "data"),
           "XDG_CACHE_HOME": os.path.join(home, "cache"), "FANYI_GET_RETRY_DELAY": "0"}
    return run(["get"] + list(args), check=check, env=env, timeout=600)


def installed(home, name):
    return os.path.join(home, "data", "fanyi", "models", name)


def test_get_installs_a_model_that_translates_like_the_converter():
    ckpt = reference_checkpoint()
    hub = Hub({"Helsinki-NLP/opus-mt-tiny": repo_files(ckpt)})
    try:
        home = tmpdir()
        p = get(hub, home, "opus-mt-tiny", check=0)
        assert b"installed Helsinki-NLP/opus-mt-tiny" in p.stderr, p.stderr
        d = installed(home, "opus-mt-tiny")
        assert sorted(os.listdir(d)) == ["config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json"]
        direct = os.path.join(tmpdir(), "direct")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_marian.py"), ckpt, direct], check=True,
                       capture_output=True)
        for f in ("config.json", "model.safetensors"):
            assert open(os.path.join(d, f), "rb").read() == open(os.path.join(direct, f), "rb").read(), f
        # Found by name afterwards, as the issue asks: fanyi -m opus-mt-tiny.
        env = {"XDG_DATA_HOME": os.path.join(home, "data")}
        a = run(["-m", "opus-mt-tiny", "--scores"], "a man rides a horse\n", check=0, env=env)
        b = run(["-m", direct, "--scores"], "a man rides a horse\n", check=0)
        assert a.stdout == b.stdout and a.stdout.strip()
        assert b"opus-mt-tiny" in run(["--list-models"], check=0, env=env).stdout
        # The weights came through the redirect and were checked; no download is left in the cache.
        assert any(m == "GET" and path.startswith("/cdn/") for m, path, _ in hub.log)
        assert not os.listdir(os.path.join(home, "cache", "fanyi", "downloads"))
        # Installing twice needs --force.
        assert b"--force" in get(hub, home, "opus-mt-tiny", check=2).stderr
        get(hub, home, "opus-mt-tiny", "--force", "--dtype", "f16", check=0)
    finally:
        hub.close()


def test_get_prefers_safetensors():
    ckpt = reference_checkpoint()
    st_dir = os.path.join(tmpdir(), "st")
    shutil.copytree(ckpt, st_dir)
    import torch
    from fanyi_ref.modeldir import write_safetensors
    state = torch.load(os.path.join(ckpt, "pytorch_model.bin"))
    write_safetensors(os.path.join(st_dir, "model.safetensors"), {k: v.contiguous().clone() for k, v in state.items()})
    hub = Hub({"org/both": repo_files(st_dir)})
    try:
        home = tmpdir()
        get(hub, home, "org/both", check=0)
        fetched = [path for m, path, _ in hub.log if m == "GET" and "resolve" in path]
        assert any(p.endswith("model.safetensors") for p in fetched)
        assert not any(p.endswith("pytorch_model.bin") for p in fetched)
    finally:
        hub.close()


def test_dropped_connection_resumes_with_range():
    ckpt = reference_checkpoint()
    hub = Hub({"org/tiny": repo_files(ckpt)})
    try:
        home = tmpdir()
        # Dropped twice mid-file: resumed within the same run.
        step = weights_size() // 4
        hub.drop_after, hub.drops_left = step, 2
        get(hub, home, "org/tiny", check=0)
        ranges = [r for m, path, r in hub.log if m == "GET" and path.startswith("/cdn/") and r]
        assert ranges == [f"bytes={step}-", f"bytes={2 * step}-"], ranges
        # Dropped more often than it retries: the run fails, nothing is installed, the part stays;
        # the next run resumes from it.
        home = tmpdir()
        hub.log.clear()
        step = weights_size() // 10
        hub.drop_after, hub.drops_left = step, 6
        p = get(hub, home, "org/tiny", check=2)
        assert b"run" in p.stderr and b"resume" in p.stderr, p.stderr
        assert not os.path.exists(installed(home, "tiny"))
        models = os.path.dirname(installed(home, "tiny"))
        assert not os.path.exists(models) or not os.listdir(models)
        hub.log.clear()
        get(hub, home, "org/tiny", check=0)
        ranges = [r for m, path, r in hub.log if m == "GET" and path.startswith("/cdn/")]
        assert ranges == [f"bytes={6 * step}-"], ranges
        assert os.path.exists(os.path.join(installed(home, "tiny"), "model.safetensors"))
    finally:
        hub.close()


def test_unknown_and_non_marian_models_are_clear_errors():
    ckpt = reference_checkpoint()
    bert = os.path.join(tmpdir(), "bert")
    os.makedirs(bert)
    json.dump({"model_type": "bert"}, open(os.path.join(bert, "config.json"), "w"))
    hub = Hub({"org/tiny": repo_files(ckpt, drop=("vocab.json",)), "org/bert": repo_files(bert)})
    try:
        home = tmpdir()
        err = get(hub, home, "org/nothing", check=2).stderr
        assert b"'org/nothing' was not found" in err, err
        err = get(hub, home, "org/bert", check=2).stderr
        assert b"not a MarianMT model" in err and b"bert" in err, err
        err = get(hub, home, "org/tiny", check=2).stderr
        assert b"vocab.json" in err, err
        assert b"is not a hub model name" in get(hub, home, "../x/y", check=2).stderr
        assert not os.path.exists(os.path.join(home, "data", "fanyi", "models", "tiny"))
    finally:
        hub.close()


def test_full_disk_leaves_no_model():
    """A write that fails part-way (here: a file-size limit, as a full disk would) is a clear error."""
    import resource
    import signal
    ckpt = reference_checkpoint()
    hub = Hub({"org/tiny": repo_files(ckpt)})
    try:
        home = tmpdir()
        env = dict(os.environ, HF_ENDPOINT=hub.endpoint, XDG_DATA_HOME=os.path.join(home, "data"),
                   XDG_CACHE_HOME=os.path.join(home, "cache"))

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (weights_size() // 2, weights_size() // 2))
        p = subprocess.run([BIN, "get", "org/tiny"], env=env, capture_output=True, preexec_fn=limit, timeout=600)
        assert p.returncode == 2 and b"cannot write" in p.stderr and b"resume" in p.stderr, p.stderr
        assert not os.path.exists(installed(home, "tiny"))
    finally:
        hub.close()


def test_get_works_after_make_install():
    ckpt = reference_checkpoint()
    dest = tmpdir()
    subprocess.run(["make", "-s", "install", "PREFIX=/usr", f"DESTDIR={dest}"], cwd=ROOT, check=True,
                   capture_output=True)
    hub = Hub({"org/tiny": repo_files(ckpt)})
    try:
        home = tmpdir()
        env = dict(os.environ, HF_ENDPOINT=hub.endpoint, XDG_DATA_HOME=os.path.join(home, "data"),
                   XDG_CACHE_HOME=os.path.join(home, "cache"))
        p = subprocess.run([os.path.join(dest, "usr", "bin", "fanyi"), "get", "org/tiny"], env=env,
                           capture_output=True, timeout=600, cwd="/")
        assert p.returncode == 0, p.stderr
        assert os.path.exists(os.path.join(installed(home, "tiny"), "model.safetensors"))
    finally:
        hub.close()
