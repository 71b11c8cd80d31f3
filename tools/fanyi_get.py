#!/usr/bin/python3
"""fanyi get: downloads a MarianMT (Opus-MT) model from the Hugging Face hub, converts it, installs it.

    fanyi get [--revision REV] [--dtype f32|f16|int8] [--name NAME] [--force] MODEL

MODEL is a hub repository, "Helsinki-NLP/opus-mt-en-de", or a bare name taken
from Helsinki-NLP ("opus-mt-en-de"). The model is installed as NAME (default:
the repository's name) under $XDG_DATA_HOME/fanyi/models (else
~/.local/share/fanyi/models), where `fanyi -m NAME` finds it.

Only the file endpoint is used: GET {endpoint}/{repo}/resolve/{revision}/{file},
endpoint from $HF_ENDPOINT (default https://huggingface.co). Downloads resume
with a Range request (after a dropped connection, and when the command is run
again); sizes and, where the hub sends them (X-Linked-Etag), sha256 are checked.
Partial downloads wait in $XDG_CACHE_HOME/fanyi/downloads (else ~/.cache/...).
The model directory appears whole or not at all. Needs Python 3 and numpy only.

Exit status: 0 installed, 1 usage error, 2 model, download or disk error.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_marian import Unsupported, convert  # noqa: E402

REQUIRED = ("config.json", "source.spm", "target.spm", "vocab.json")
OPTIONAL = ("target_vocab.json", "generation_config.json", "tokenizer_config.json")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # in order of preference
RETRIES = 5
CHUNK = 1 << 20


class GetError(Exception):
    """A failure to report: the message says what and, where it helps, what to do."""


class NotFound(GetError):
    pass


def data_home():
    xdg = os.environ.get("XDG_DATA_HOME", "")
    return os.path.join(xdg if xdg.startswith("/") else os.path.join(os.path.expanduser("~"), ".local", "share"),
                        "fanyi", "models")


def cache_home():
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return os.path.join(xdg if xdg.startswith("/") else os.path.join(os.path.expanduser("~"), ".cache"),
                        "fanyi", "downloads")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Hub:
    """The hub's file endpoint: HEAD for what a file is, GET (with Range) for its bytes."""

    def __init__(self, endpoint, repo, revision, progress):
        self.endpoint, self.repo, self.revision, self.progress = endpoint.rstrip("/"), repo, revision, progress
        self._head_opener = urllib.request.build_opener(_NoRedirect)

    def url(self, filename):
        return (f"{self.endpoint}/{self.repo}/resolve/{urllib.parse.quote(self.revision, safe='')}/"
                f"{urllib.parse.quote(filename)}")

    def describe(self, filename):
        """(size or None, sha256 or None) of a file, following redirects; NotFound for 404/401."""
        url = self.url(filename)
        for _ in range(10):
            req = urllib.request.Request(url, method="HEAD", headers={"Accept-Encoding": "identity"})
            try:
                resp = self._head_opener.open(req, timeout=30)
                headers, status = resp.headers, resp.status
                resp.close()
            except urllib.error.HTTPError as e:
                headers, status = e.headers, e.code
            except (urllib.error.URLError, OSError) as e:
                raise GetError(f"cannot reach {self.endpoint}: {getattr(e, 'reason', e)}") from None
            linked_size, linked_etag = headers.get("X-Linked-Size"), headers.get("X-Linked-Etag", "")
            if status in (401, 404):
                raise NotFound(f"{filename}: not found in {self.repo} at {self.endpoint} (HTTP {status})")
            if 300 <= status < 400 and linked_size is None:
                url = urllib.parse.urljoin(url, headers.get("Location", ""))  # a renamed repository
                continue
            if status >= 400:
                raise GetError(f"{filename}: HTTP {status} from {self.endpoint}")
            size = linked_size or headers.get("Content-Length")
            sha = linked_etag.strip('"').lower()
            return (int(size) if size and size.isdigit() else None,
                    sha if re.fullmatch(r"[0-9a-f]{64}", sha) else None)
        raise GetError(f"{filename}: too many redirects")

    def download(self, filename, dest, size, sha256):
        """Fetches filename into dest, resuming dest + '.part'; checks size and sha256."""
        part = dest + ".part"
        for attempt in range(RETRIES + 1):
            try:
                self._fetch(filename, part, size)
                break
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, urllib.error.URLError,
                    http.client.HTTPException) as e:
                if attempt == RETRIES:
                    have = os.path.getsize(part) if os.path.exists(part) else 0
                    raise GetError(f"{filename}: the connection dropped {RETRIES + 1} times ({e}); {have} bytes are "
                                   f"kept, and running the same command again resumes from there") from None
                time.sleep(min(2 ** attempt, 8) * float(os.environ.get("FANYI_GET_RETRY_DELAY", "1")))
        got = os.path.getsize(part)
        if size is not None and got != size:
            os.remove(part)
            raise GetError(f"{filename}: {got} bytes received, the hub announced {size}; removed, run again")
        if sha256 is not None:
            h = hashlib.sha256()
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(CHUNK), b""):
                    h.update(block)
            if h.hexdigest() != sha256:
                os.remove(part)
                raise GetError(f"{filename}: sha256 {h.hexdigest()} differs from the hub's {sha256}; removed, run again")
        os.replace(part, dest)

    def _fetch(self, filename, part, size):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if size is not None and have == size:
            return
        if size is not None and have > size:
            os.remove(part)
            have = 0
        headers = {"Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            resp = urllib.request.urlopen(urllib.request.Request(self.url(filename), headers=headers), timeout=30)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the part is already complete, or stale: start over
                os.remove(part)
                return self._fetch(filename, part, size)
            if e.code in (401, 404):
                raise NotFound(f"{filename}: not found in {self.repo} (HTTP {e.code})") from None
            raise GetError(f"{filename}: HTTP {e.code} from {self.endpoint}") from None
        with resp:
            if resp.status != 206:  # the server ignored the range: begin again
                have = 0
            total = size if size is not None else (have + int(resp.headers.get("Content-Length", 0)) or None)
            with open(part, "ab" if have else "wb") as out:
                done = have
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    try:
                        out.write(block)
                    except OSError as e:
                        raise GetError(f"cannot write {part}: {e.strerror}; {done} bytes are kept, free some space "
                                       "and run the same command again to resume") from None
                    done += len(block)
                    self.progress(filename, done, total)
            if total is not None and done < total:
                raise http.client.IncompleteRead(b"", total - done)


def progress_printer(stream):
    last = [0.0]

    def show(filename, done, total):
        now = time.time()
        if not stream.isatty() or (now - last[0] < 0.1 and done != total):
            return
        last[0] = now
        pct = f" {100 * done / total:3.0f}%" if total else ""
        of = f" / {total / 1e6:.1f}" if total else ""
        stream.write(f"\rfanyi get: {filename}  {done / 1e6:.1f}{of} MB{pct}   ")
        if total and done >= total:
            stream.write("\n")
        stream.flush()
    return show


def parse_args(argv):
    p = argparse.ArgumentParser(prog="fanyi get", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="hub repository (Helsinki-NLP/opus-mt-en-de) or Helsinki-NLP model name")
    p.add_argument("--revision", default="main", help="branch, tag or commit (default main)")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16", "int8"],
                   help="how to store the weights (default f32: exactly Hugging Face's numbers)")
    p.add_argument("--name", help="installed name (default: the repository's name)")
    p.add_argument("--force", action="store_true", help="replace an installed model of the same name")
    return p.parse_args(argv)


def install(args, log):
    repo = args.model if "/" in args.model else f"Helsinki-NLP/{args.model}"
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo) or ".." in repo:
        raise GetError(f"'{args.model}' is not a hub model name (ORGANIZATION/NAME)")
    name = args.name or repo.split("/")[1]
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        raise GetError(f"'{name}' cannot name a model directory")
    models = data_home()
    dest = os.path.join(models, name)
    if os.path.exists(dest) and not args.force:
        raise GetError(f"{dest} exists; use --force to replace it")
    hub = Hub(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), repo, args.revision,
              progress_printer(sys.stderr))
    cache = os.path.join(cache_home(), f"{repo.replace('/', '--')}--{args.revision.replace('/', '--')}")
    os.makedirs(cache, exist_ok=True)

    try:
        hub.download("config.json", os.path.join(cache, "config.json"), *hub.describe("config.json"))
    except NotFound:
        raise GetError(f"model '{repo}' was not found at {hub.endpoint} (no config.json at revision "
                       f"'{args.revision}')") from None
    with open(os.path.join(cache, "config.json"), encoding="utf-8") as f:
        try:
            config = json.load(f)
        except ValueError:
            raise GetError(f"{repo}: config.json is not JSON") from None
    if config.get("model_type") != "marian":
        raise GetError(f"{repo} is not a MarianMT model (model_type '{config.get('model_type')}'); fanyi converts "
                       "MarianMT (Opus-MT) models")
    for filename in REQUIRED[1:] + OPTIONAL:
        try:
            info = hub.describe(filename)
        except NotFound:
            if filename in REQUIRED:
                raise GetError(f"{repo} lacks {filename}, which a MarianMT model needs") from None
            continue
        hub.download(filename, os.path.join(cache, filename), *info)
    for filename in WEIGHTS:
        try:
            info = hub.describe(filename)
        except NotFound:
            continue
        hub.download(filename, os.path.join(cache, filename), *info)
        break
    else:
        raise GetError(f"{repo} has neither {' nor '.join(WEIGHTS)}")

    os.makedirs(models, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=models)
    try:
        cfg = convert(cache, os.path.join(staging, name), args.dtype)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(staging, name), dest)
    except Unsupported as e:
        raise GetError(f"{repo}: cannot convert: {e}") from None
    except OSError as e:
        raise GetError(f"cannot install into {models}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    log(f"fanyi get: installed {repo} as '{name}' in {dest} ({args.dtype}, {cfg['encoder_layers']}+"
        f"{cfg['decoder_layers']} layers); translate with: fanyi -m {name}")
    return dest


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        install(args, lambda msg: print(msg, file=sys.stderr))
    except GetError as e:
        print(f"fanyi get: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk error outside the download loop (a full disk while converting, say)
        print(f"fanyi get: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
