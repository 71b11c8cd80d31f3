#!/usr/bin/python3
"""Trains a fanyi Transformer from parallel text and exports a fanyi model directory.

    /usr/bin/python3 tools/train.py --workdir work/en-de \\
        --train-src ../shared/data/multi30k/train.en.gz --train-tgt ../shared/data/multi30k/train.de.gz \\
        --valid-src ../shared/data/multi30k/val.en.gz --valid-tgt ../shared/data/multi30k/val.de.gz \\
        --joint-vocab 8000 --export models/en-de --dtype f16

Everything lives in --workdir: the SentencePiece models, `last.pt` (written
after every epoch and every --save-minutes, so an interrupted run continues
where it stopped when started again with the same command), the per-epoch
weights kept for averaging, and `log.tsv`.
"""

import argparse
import gzip
import json
import math
import os
import random
import shutil
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fanyi_ref import Config, build, load_model_dir, save_model_dir  # noqa: E402
from fanyi_ref.metrics import corpus_bleu, corpus_chrf  # noqa: E402
from fanyi_ref.search import Options, translate  # noqa: E402


def read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def read_pairs(src_path, tgt_path, tsv_path, tsv_columns):
    if tsv_path:
        si, ti = tsv_columns
        rows = [line.split("\t") for line in read_lines(tsv_path)]
        return [r[si] for r in rows], [r[ti] for r in rows]
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise SystemExit(f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
    return src, tgt


def train_spm(prefix, lines, vocab_size, model_type, character_coverage):
    import sentencepiece as spm
    if os.path.exists(prefix + ".model"):
        return
    text = prefix + ".txt"
    with open(text, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    spm.SentencePieceTrainer.train(
        input=text, model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
        character_coverage=character_coverage, pad_id=0, unk_id=1, eos_id=2, bos_id=-1,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=2, hard_vocab_limit=False)
    os.remove(text)


def load_spm(path):
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=path)


def encode_corpus(sp_src, sp_tgt, src, tgt, max_len):
    s_ids = sp_src.encode(src)
    t_ids = sp_tgt.encode(tgt)
    keep = [(s, t) for s, t in zip(s_ids, t_ids) if 0 < len(s) < max_len and 0 < len(t) < max_len]
    return keep


def make_batches(pairs, max_tokens, rng):
    """Groups pairs of similar length so that each batch holds ~max_tokens target+source tokens."""
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i][1]), len(pairs[i][0]), rng.random()))
    batches, cur, cur_max = [], [], 0
    for i in order:
        n = max(len(pairs[i][0]), len(pairs[i][1])) + 2
        if cur and max(cur_max, n) * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, cur_max = [], 0
        cur.append(i)
        cur_max = max(cur_max, n)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def tensors_for(pairs, idx, cfg, device):
    eos, pad, start = cfg.eos_id, cfg.pad_id, cfg.decoder_start_id
    srcs = [pairs[i][0] + [eos] for i in idx]
    tins = [[start] + pairs[i][1] for i in idx]
    touts = [pairs[i][1] + [eos] for i in idx]

    def pad_to(seqs):
        n = max(len(s) for s in seqs)
        return torch.tensor([s + [pad] * (n - len(s)) for s in seqs], dtype=torch.long, device=device)

    return pad_to(srcs), pad_to(tins), pad_to(touts)


def smoothed_loss(logits, target, pad_id, smoothing):
    """Label-smoothed cross-entropy summed over non-pad tokens; also the plain NLL."""
    lprobs = torch.log_softmax(logits.float(), dim=-1).view(-1, logits.shape[-1])
    target = target.reshape(-1)
    mask = target != pad_id
    nll = -lprobs.gather(1, target[:, None])[:, 0]
    smooth = -lprobs.mean(dim=-1)
    loss = (1 - smoothing) * nll + smoothing * smooth
    return loss[mask].sum(), nll[mask].sum(), int(mask.sum())


def lr_at(step, peak, warmup):
    step = max(step, 1)
    return peak * min(step / warmup, math.sqrt(warmup / step))


# Validation BLEU decodes at most this many tokens per source token (EOS included): an early model's
# looping outputs otherwise run to max_positions and made zh-en's validation take as long as its epoch.
VALID_LENGTH_RATIO = 3.0


def evaluate(model, cfg, valid, sp_tgt, valid_refs, device, batch_size=100, bleu_sentences=None,
             tokenize="13a"):
    model.eval()
    tot_loss = tot_tok = 0
    with torch.no_grad():
        for b in range(0, len(valid), batch_size):
            idx = list(range(b, min(len(valid), b + batch_size)))
            src, tin, tout = tensors_for(valid, idx, cfg, device)
            _, nll, ntok = smoothed_loss(model(src, tin), tout, cfg.pad_id, 0.0)
            tot_loss += nll.item()
            tot_tok += ntok
    n = len(valid) if bleu_sentences is None else min(bleu_sentences, len(valid))
    hyps = []
    cpu_model = model if device == "cpu" else model.to("cpu")
    for b in range(0, n, batch_size):
        out = translate(cpu_model, [valid[i][0] for i in range(b, min(n, b + batch_size))],
                        Options(beam_size=1, max_length=cfg.max_positions - 1,
                                max_length_ratio=VALID_LENGTH_RATIO))
        hyps += [sp_tgt.decode(h[0].tokens) if h else "" for h in out]
    if device != "cpu":
        model.to(device)
    model.train()
    refs = valid_refs[:n]
    return tot_loss / max(1, tot_tok), corpus_bleu(hyps, refs, tokenize), corpus_chrf(hyps, refs)


ARCHITECTURE_KEYS = ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "encoder_layers",
                     "decoder_layers", "activation", "norm", "shared_embeddings")


def copy_vocabulary(model_dir, workdir, spm_names):
    """Continued training keeps the vocabulary of the model it starts from."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    names = {config.get(k) for k in ("source_spm", "target_spm")}
    if names != set(spm_names):
        sys.exit(f"train.py: --init-from {model_dir}: its vocabulary files {sorted(n for n in names if n)} "
                 f"do not match {spm_names} (use --joint-vocab for a shared vocabulary)")
    for n in spm_names:
        shutil.copyfile(os.path.join(model_dir, n), os.path.join(workdir, n))


def average_state(paths):
    avg = None
    for p in paths:
        st = torch.load(p, map_location="cpu")
        if "model" in st and "optim" in st:  # last.pt: the model inside a training checkpoint
            st = st["model"]
        if avg is None:
            avg = {k: v.clone().float() for k, v in st.items()}
        else:
            for k in avg:
                avg[k] += st[k].float()
    return {k: v / len(paths) for k, v in avg.items()}


def export(args, cfg, state_paths):
    state = average_state(state_paths)
    files = {}
    if cfg.source_spm:
        files[cfg.source_spm] = os.path.join(args.workdir, cfg.source_spm)
    if cfg.target_spm and cfg.target_spm != cfg.source_spm:
        files[cfg.target_spm] = os.path.join(args.workdir, cfg.target_spm)
    save_model_dir(args.export, cfg, state, args.dtype, files)
    print(f"exported {args.export} ({args.dtype}) from {len(state_paths)} checkpoint(s)", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--train-src"), p.add_argument("--train-tgt"), p.add_argument("--train-tsv")
    p.add_argument("--valid-src"), p.add_argument("--valid-tgt"), p.add_argument("--valid-tsv")
    p.add_argument("--tsv-columns", default="0,1", help="source,target column of the TSV files")
    p.add_argument("--joint-vocab", type=int, default=0, help="one shared vocabulary of this size")
    p.add_argument("--src-vocab", type=int, default=8000)
    p.add_argument("--tgt-vocab", type=int, default=8000)
    p.add_argument("--spm-type", default="unigram", choices=["unigram", "bpe"])
    p.add_argument("--src-coverage", type=float, default=1.0)
    p.add_argument("--tgt-coverage", type=float, default=1.0)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers")
    p.add_argument("--decoder-layers", type=int, default=0, help="overrides --layers for the decoder")
    p.add_argument("--activation", default="relu")
    p.add_argument("--norm", default="pre", choices=["pre", "post"])
    p.add_argument("--max-positions", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--attn-dropout", type=float, default=0.1)
    p.add_argument("--act-dropout", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--max-hours", type=float, default=0, help="stop after this long (0: no limit)")
    p.add_argument("--save-minutes", type=float, default=10)
    p.add_argument("--average", type=int, default=5, help="average the best N epochs on export")
    p.add_argument("--bleu-sentences", type=int, default=0, help="validate BLEU on the first N (0: all)")
    p.add_argument("--bleu-tokenize", default="13a")
    p.add_argument("--export"), p.add_argument("--dtype", default="f32", choices=["f32", "f16", "int8"])
    p.add_argument("--export-only", action="store_true", help="export from the workdir and stop")
    p.add_argument("--export-checkpoints", default="",
                   help="comma-separated checkpoint files in the workdir to average on export (last.pt allowed); "
                        "default: the --average best by validation BLEU")
    p.add_argument("--init-from", metavar="MODEL_DIR",
                   help="start from the weights and vocabulary of this fanyi model directory (continued "
                        "training with a fresh optimizer; the architecture options must match it)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast for the forward pass (weights, optimizer and loss stay f32)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    args.tsv_columns = [int(c) for c in args.tsv_columns.split(",")]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.workdir, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    spm_names = ["spm.model"] if args.joint_vocab else ["source.model", "target.model"]
    have_spm = all(os.path.exists(os.path.join(args.workdir, n)) for n in spm_names)
    train_src = train_tgt = []
    if not (args.export_only and have_spm):
        train_src, train_tgt = read_pairs(args.train_src, args.train_tgt, args.train_tsv, args.tsv_columns)

    if args.init_from:
        copy_vocabulary(args.init_from, args.workdir, spm_names)
    elif args.joint_vocab:
        train_spm(os.path.join(args.workdir, "spm"), train_src + train_tgt, args.joint_vocab, args.spm_type,
                  min(args.src_coverage, args.tgt_coverage))
        src_spm = tgt_spm = "spm.model"
    else:
        train_spm(os.path.join(args.workdir, "source"), train_src, args.src_vocab, args.spm_type, args.src_coverage)
        train_spm(os.path.join(args.workdir, "target"), train_tgt, args.tgt_vocab, args.spm_type, args.tgt_coverage)
    src_spm, tgt_spm = (spm_names[0], spm_names[0]) if args.joint_vocab else tuple(spm_names)
    sp_src = load_spm(os.path.join(args.workdir, src_spm))
    sp_tgt = load_spm(os.path.join(args.workdir, tgt_spm))

    cfg = Config(
        src_vocab_size=sp_src.get_piece_size(), tgt_vocab_size=sp_tgt.get_piece_size(),
        d_model=args.d_model, n_heads=args.heads, d_ff=args.d_ff, encoder_layers=args.layers,
        decoder_layers=args.decoder_layers or args.layers, max_positions=args.max_positions,
        activation=args.activation, norm=args.norm, encoder_final_norm=args.norm == "pre",
        decoder_final_norm=args.norm == "pre", scale_embeddings=True, positions="sinusoidal-halves",
        shared_embeddings=bool(args.joint_vocab), tied_output=True, logits_bias=False,
        pad_id=0, unk_id=1, eos_id=2, decoder_start_id=0, source_spm=src_spm, target_spm=tgt_spm,
        beam_size=5, max_length=args.max_positions - 1, max_length_ratio=3.0, length_penalty=1.0)
    with open(os.path.join(args.workdir, "config.json"), "w") as f:
        json.dump(cfg.to_json(), f, indent=2)

    ckpt_path = os.path.join(args.workdir, "last.pt")
    history = []  # (epoch, valid_bleu, path)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu")
        history = ck["history"]
    if args.export_only:
        if args.export_checkpoints:
            export(args, cfg, [os.path.join(args.workdir, n) for n in args.export_checkpoints.split(",")])
        else:
            export(args, cfg, [h[2] for h in sorted(history, key=lambda h: -h[1])[: args.average]])
        return

    valid_src, valid_tgt = read_pairs(args.valid_src, args.valid_tgt, args.valid_tsv, args.tsv_columns)
    train = encode_corpus(sp_src, sp_tgt, train_src, train_tgt, args.max_positions - 1)
    valid = [(sp_src.encode(s)[: args.max_positions - 1], sp_tgt.encode(t)[: args.max_positions - 1])
             for s, t in zip(valid_src, valid_tgt)]
    print(f"train {len(train)} pairs, valid {len(valid)}; vocab {cfg.src_vocab_size}/{cfg.tgt_vocab_size}",
          flush=True)

    model = build(cfg, dropout=args.dropout, attn_dropout=args.attn_dropout, act_dropout=args.act_dropout)
    model.to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9)
    step, epoch, batch_pos, epoch_seed = 0, 0, 0, args.seed
    if os.path.exists(ckpt_path):
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        step, epoch, batch_pos, epoch_seed = ck["step"], ck["epoch"], ck["batch_pos"], ck["epoch_seed"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {ckpt_path}: epoch {epoch}, batch {batch_pos}, step {step}", flush=True)
    elif args.init_from:
        init_cfg, init_state = load_model_dir(args.init_from)
        differ = [f"{k} {getattr(init_cfg, k)} (options: {getattr(cfg, k)})" for k in ARCHITECTURE_KEYS
                  if getattr(init_cfg, k) != getattr(cfg, k)]
        if differ:
            sys.exit(f"train.py: --init-from {args.init_from}: its architecture differs: {', '.join(differ)}")
        model.load_state_dict(init_state)
        print(f"initialized from {args.init_from}", flush=True)

    def save():
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step, "epoch": epoch,
                    "batch_pos": batch_pos, "epoch_seed": epoch_seed, "history": history,
                    "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt_path)

    log = open(os.path.join(args.workdir, "log.tsv"), "a")
    start = time.time()
    last_save = time.time()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters", flush=True)
    deadline = start + args.max_hours * 3600 if args.max_hours else None
    while epoch < args.epochs:
        batches = make_batches(train, args.max_tokens, random.Random(epoch_seed + epoch))
        model.train()
        t_epoch = time.time()
        tok_seen = 0
        loss_sum = tok_sum = 0.0
        while batch_pos < len(batches):
            src, tin, tout = tensors_for(train, batches[batch_pos], cfg, args.device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step + 1, args.lr, args.warmup)
            with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16):
                logits = model(src, tin)
            loss, nll, ntok = smoothed_loss(logits, tout, cfg.pad_id, args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            (loss / ntok).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            batch_pos += 1
            tok_seen += ntok
            loss_sum += nll.item()
            tok_sum += ntok
            if step % 20 == 0:
                el = time.time() - t_epoch
                rate = tok_seen / max(el, 1e-9)
                left_epoch = (len(batches) - batch_pos) * el / max(1, batch_pos)
                total_left = left_epoch + (args.epochs - epoch - 1) * len(batches) * el / max(1, batch_pos)
                print(f"epoch {epoch + 1} batch {batch_pos}/{len(batches)} step {step} "
                      f"nll {loss_sum / max(1, tok_sum):.3f} lr {lr_at(step, args.lr, args.warmup):.2e} "
                      f"{rate:.0f} tgt tok/s  epoch ETA {left_epoch / 60:.1f} min, "
                      f"run ETA {total_left / 3600:.2f} h", flush=True)
                loss_sum = tok_sum = 0.0
            if time.time() - last_save > args.save_minutes * 60:
                save()
                last_save = time.time()
            if deadline and time.time() > deadline:
                save()
                print("time limit reached; run the same command again to continue", flush=True)
                return
        vloss, vbleu, vchrf = evaluate(model, cfg, valid, sp_tgt, valid_tgt, args.device,
                                       bleu_sentences=args.bleu_sentences or None, tokenize=args.bleu_tokenize)
        epoch += 1
        batch_pos = 0
        path = os.path.join(args.workdir, f"epoch{epoch:03d}.pt")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        history.append((epoch, vbleu, path))
        keep = {h[2] for h in sorted(history, key=lambda h: -h[1])[: args.average]}
        for h in history:
            if h[2] not in keep and os.path.exists(h[2]):
                os.remove(h[2])
        history = [h for h in history if h[2] in keep]
        save()
        last_save = time.time()
        msg = (f"epoch {epoch} step {step} valid nll {vloss:.3f} ppl {math.exp(vloss):.2f} "
               f"BLEU {vbleu:.2f} chrF {vchrf:.2f} ({(time.time() - t_epoch) / 60:.1f} min)")
        print(msg, flush=True)
        log.write(f"{epoch}\t{step}\t{vloss:.4f}\t{vbleu:.2f}\t{vchrf:.2f}\t{time.time() - start:.0f}\n")
        log.flush()
    if args.export:
        best = sorted(history, key=lambda h: -h[1])[: args.average]
        export(args, cfg, [h[2] for h in best])


if __name__ == "__main__":
    main()
