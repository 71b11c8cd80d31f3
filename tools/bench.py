#!/usr/bin/python3
"""fanyi against the PyTorch reference, side by side in one run (`make bench`).

    /usr/bin/python3 tools/bench.py [--fanyi ./fanyi] [--model models/en-de] [--sentences 1000]

Translates multi30k test_2016_flickr.en with the model at beam 1 and 5, with 1
and 2 threads, stored as f32 and as int8, through fanyi and through the
PyTorch reference decoding as a good PyTorch user would: inference mode, cached
keys/values, all beams of a batch in one tensor, the same batch size (32
sentences, sorted by length) and the same thread count. Each run is its own
process, so peak RSS is its own. Both search without the model's repetition
guards (config no_repeat_ngram_size, repetition_penalty), so that the ratio
measures the engines rather than a per-step Python loop on PyTorch's side. Prints one table: sentences/s, target
tokens/s, wall time, peak RSS, load-to-first-output (a one-line run), BLEU,
and fanyi/PyTorch speed; then this machine's OpenBLAS sgemm rate beside
fanyi's own kernel and the engine's achieved GFLOP/s.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
BATCH = 32


def run_with_rusage(cmd, stdin_path, env=None):
    """Runs cmd; returns (stdout, wall seconds, peak RSS KB, stderr).

    The peak RSS comes from GNU time: a child forked straight from this (large)
    Python process would report this process's pages as its own."""
    t = time.perf_counter()
    with open(stdin_path, "rb") as inp, tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        p = subprocess.Popen(["/usr/bin/time", "-f", "maxrss=%M"] + cmd, stdin=inp, stdout=out_f, stderr=err_f,
                             env=env)
        p.wait()
        wall = time.perf_counter() - t
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {err.decode()[-2000:]}")
    rss = int(err.decode().rsplit("maxrss=", 1)[1].split()[0])
    return out, wall, rss, err


def first_output_latency(cmd, line, env=None):
    """Seconds from process start until the first translated line arrives (one input line)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    p.stdin.write(line.encode() + b"\n")
    p.stdin.close()
    p.stdout.readline()
    latency = time.perf_counter() - t
    p.wait()
    return latency


def torch_reference(model_dir, threads):
    """The PyTorch reference model as a PyTorch user runs it: inference mode, and for an int8 model
    dynamic quantization of the Linear layers (fbgemm). Returns (config, model)."""
    import torch
    torch.set_num_threads(threads)
    from fanyi_ref import build, load_model_dir
    cfg, state, quantized = load_model_dir(model_dir, with_quantized=True)
    model = build(cfg, state).eval()
    if quantized:
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return cfg, model


def torch_worker(args):
    """Runs inside its own process: translates stdin with the PyTorch reference, writes text lines."""
    import torch
    from fanyi_ref.search import Options, translate
    import sentencepiece as spm
    cfg, model = torch_reference(args.model, args.threads)
    sp_src = spm.SentencePieceProcessor(model_file=os.path.join(args.model, cfg.source_spm))
    sp_tgt = spm.SentencePieceProcessor(model_file=os.path.join(args.model, cfg.target_spm))
    lines = sys.stdin.read().split("\n")[:-1]
    start = time.perf_counter()  # translation time: after imports and loading, like fanyi's below
    ids = sp_src.encode(lines)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = [""] * len(ids)
    # without the repetition guards, as fanyi runs here (--no-repeat-ngram 0 --repetition-penalty 1)
    opts = Options.from_config(cfg, beam_size=args.beam, no_repeat_ngram=0, repetition_penalty=1.0)
    with torch.inference_mode():
        for b in range(0, len(order), BATCH):
            chunk = order[b:b + BATCH]
            for i, hyps in zip(chunk, translate(model, [ids[i] for i in chunk], opts)):
                out[i] = sp_tgt.decode(hyps[0].tokens) if hyps else ""
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stderr.write(f"translate_seconds={time.perf_counter() - start}\n")


def reencode(model_dir, dtype, dest):
    from fanyi_ref import load_model_dir, save_model_dir
    cfg, state = load_model_dir(model_dir)
    files = {n: os.path.join(model_dir, n) for n in {cfg.source_spm, cfg.target_spm} if n}
    save_model_dir(dest, cfg, state, dtype, files)
    return dest


def gemm_rates(build_dir):
    exe = os.path.join(build_dir, "gemm_rate")
    if not os.path.exists(exe):
        return None
    rates = json.loads(subprocess.run([exe], capture_output=True, text=True, check=True).stdout)
    # The same product through fanyi's OpenBLAS backend (8-row sgemm calls, batch-invariant).
    blas = subprocess.run([exe], capture_output=True, text=True, check=True,
                          env=dict(os.environ, FANYI_GEMM="openblas")).stdout
    rates["fanyi_openblas"] = json.loads(blas)["fanyi_f32"]
    return rates


def model_flops(model_dir, src_tokens, tgt_tokens, beam):
    """Approximate FLOPs: 2 per weight per token through the encoder and decoder (beam rows), output layer included."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    d, f = cfg["d_model"], cfg["d_ff"]
    enc = cfg["encoder_layers"] * (4 * d * d + 2 * d * f)
    dec = cfg["decoder_layers"] * (8 * d * d + 2 * d * f) + d * cfg["tgt_vocab_size"]
    return 2 * (enc * src_tokens + dec * tgt_tokens * beam)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fanyi", default=os.path.join(ROOT, "fanyi"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "en-de"))
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--dtypes", default="f32,int8")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--beam", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads-one", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        args.threads = args.threads_one
        return torch_worker(args)

    from fanyi_ref.metrics import corpus_bleu
    import sentencepiece as spm
    src_path = os.path.join(SHARED, "multi30k", "test_2016_flickr.en.gz")
    ref_path = os.path.join(SHARED, "multi30k", "test_2016_flickr.de.gz")
    with gzip.open(src_path, "rt", encoding="utf-8") as f:
        src = f.read().split("\n")[: args.sentences]
    with gzip.open(ref_path, "rt", encoding="utf-8") as f:
        refs = f.read().split("\n")[: len(src)]
    work = tempfile.mkdtemp(prefix="fanyi-bench-")
    src_file = os.path.join(work, "src.en")
    open(src_file, "w", encoding="utf-8").write("\n".join(src) + "\n")
    models = {dt: reencode(args.model, dt, os.path.join(work, dt)) for dt in args.dtypes.split(",")}
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, cfg["source_spm"]))
    src_tokens = sum(len(x) + 1 for x in sp.encode(src))
    tsp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, cfg["target_spm"]))

    rows = []
    for dt, mdir in models.items():
        size_mb = os.path.getsize(os.path.join(mdir, "model.safetensors")) / 2**20
        for beam in [int(b) for b in args.beams.split(",")]:
            for th in [int(t) for t in args.threads.split(",")]:
                env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS=str(th))
                fcmd = [args.fanyi, "-m", mdir, "-b", str(beam), "--threads", str(th), "--batch-size", str(BATCH),
                        "--no-repeat-ngram", "0", "--repetition-penalty", "1"]
                out, wall, rss, _ = run_with_rusage(fcmd + [src_file], src_file, env)
                hyps = out.decode().split("\n")[:-1]
                load = min(run_with_rusage(fcmd, os.devnull, env)[1] for _ in range(3))
                first = min(first_output_latency(fcmd, src[0], env) for _ in range(3))
                tgt_tokens = sum(len(x) + 1 for x in tsp.encode(hyps))
                row = {"engine": "fanyi", "dtype": dt, "beam": beam, "threads": th, "wall": wall,
                       "xlate": max(wall - load, 1e-3),
                       "sent_s": len(src) / wall, "tok_s": tgt_tokens / wall, "rss_mb": rss / 1024,
                       "first_ms": first * 1000, "bleu": corpus_bleu(hyps, refs), "size_mb": size_mb,
                       "flops": model_flops(mdir, src_tokens, tgt_tokens, beam), "hyps": hyps}
                rows.append(row)
                if not args.no_torch:
                    tcmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--model", mdir,
                            "--beam", str(beam), "--threads-one", str(th)]
                    out, wall_t, rss_t, err = run_with_rusage(tcmd, src_file, env)
                    thyps = out.decode().split("\n")[:-1]
                    xlate_t = float(err.decode().rsplit("translate_seconds=", 1)[1].split()[0])
                    ttok = sum(len(x) + 1 for x in tsp.encode(thyps))
                    first_t = first_output_latency(tcmd, src[0], env)
                    rows.append({"engine": "pytorch", "dtype": dt, "beam": beam, "threads": th, "wall": wall_t,
                                 "xlate": xlate_t,
                                 "sent_s": len(src) / wall_t, "tok_s": ttok / wall_t, "rss_mb": rss_t / 1024,
                                 "first_ms": first_t * 1000, "bleu": corpus_bleu(thyps, refs), "size_mb": size_mb,
                                 "flops": model_flops(mdir, src_tokens, ttok, beam),
                                 "same": sum(a == b for a, b in zip(hyps, thyps)), "hyps": thyps})
                    row["ratio"] = xlate_t / row["xlate"]
                    row["wall_ratio"] = wall_t / wall
                print(f"  done: {dt} beam {beam} threads {th}", file=sys.stderr, flush=True)

    print(f"\n{len(src)} sentences of multi30k test_2016_flickr.en, model {os.path.relpath(args.model, ROOT)}, "
          f"batch {BATCH}, {os.cpu_count()} CPUs ({cpu_name()})\n")
    print("sent/s and tgt tok/s count translation time (after start-up and loading, which load→first shows);\n"
          "speed-up = PyTorch translation time / fanyi translation time (wall-clock ratio in brackets).\n")
    print("| engine | weights | beam | threads | sent/s | tgt tok/s | wall s | peak RSS MB | "
          "load→first ms | BLEU | speed-up | same output as fanyi |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio']:.1f}× ({r['wall_ratio']:.1f}×)" if "ratio" in r else ""
        same = f"{r['same']}/{len(src)}" if "same" in r else ""
        n_tok = r["tok_s"] * r["wall"]
        print(f"| {r['engine']} | {r['dtype']} ({r['size_mb']:.1f} MB) | {r['beam']} | {r['threads']} | "
              f"{len(src) / r['xlate']:.1f} | {n_tok / r['xlate']:.0f} | {r['wall']:.2f} | {r['rss_mb']:.0f} | "
              f"{r['first_ms']:.0f} | {r['bleu']:.2f} | {ratio} | {same} |")
    rates = gemm_rates(os.path.join(ROOT, "build", "release"))
    if rates:
        print(f"\nGEMM on this machine (M=256, N=1024, K=256, 1 thread): OpenBLAS sgemm {rates['openblas']:.1f} "
              f"GFLOP/s, fanyi deterministic f32 {rates['fanyi_f32']:.1f} GFLOP/s, fanyi int8 "
              f"{rates.get('fanyi_int8', 0):.1f} GOP/s, fanyi f32 through its OpenBLAS backend "
              f"(batch-invariant 8-row calls; FANYI_GEMM=openblas) {rates['fanyi_openblas']:.1f} GFLOP/s")
        # How far the f32 engine is from the hardware, and what that caps: the
        # model's FLOPs at `threads` x OpenBLAS's rate is the fastest any f32 engine
        # doing this arithmetic could go.
        for r in rows:
            if r["engine"] != "fanyi" or r["dtype"] != "f32":
                continue
            achieved = r["flops"] / r["xlate"] / 1e9
            limit = r["threads"] * rates["openblas"]
            line = (f"f32 beam {r['beam']}, {r['threads']} thread(s): {achieved:.1f} GFLOP/s = "
                    f"{100 * achieved / limit:.0f}% of {r['threads']} × OpenBLAS")
            if "ratio" in r:
                line += f"; at 100% the speed-up over PyTorch would be at most {r['ratio'] * limit / achieved:.1f}×"
            print(line)
    by_key = {(r["dtype"], r["beam"], r["threads"]): r for r in rows if r["engine"] == "fanyi"}
    for (dt, beam, th), r in by_key.items():
        if dt == "int8" and ("f32", beam, th) in by_key:
            f = by_key[("f32", beam, th)]
            print(f"int8 vs f32, beam {beam}, {th} thread(s): {f['xlate'] / r['xlate']:.2f}× faster, "
                  f"BLEU {r['bleu'] - f['bleu']:+.2f}")
    best = max((r for r in rows if r["engine"] == "fanyi"), key=lambda r: r["flops"] / r["xlate"])
    print(f"fanyi's best achieved rate: {best['flops'] / best['xlate'] / 1e9:.1f} GFLOP/s (≈ model FLOPs / translation "
          f"time; {best['dtype']}, beam {best['beam']}, {best['threads']} threads)")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
