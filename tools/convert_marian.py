#!/usr/bin/python3
"""Converts a Hugging Face MarianMT model directory (Opus-MT) into a fanyi model directory.

    /usr/bin/python3 tools/convert_marian.py MARIAN_DIR OUT_DIR [--dtype f32|f16|int8]

MARIAN_DIR holds config.json, pytorch_model.bin or model.safetensors,
source.spm, target.spm, vocab.json (and tokenizer_config.json). Only torch is
needed. Any configuration fanyi cannot represent is refused with a message
saying which setting and why; nothing is written then.

What the conversion keeps (MarianMTModel semantics): embeddings scaled by
sqrt(d_model) when scale_embedding; the stored position table (checked to be
the sin-half/cos-half sinusoid starting at 0, else kept as learned
positions); post-norm layers; the configured activation; final_logits_bias;
shared and tied embeddings; </s> appended to the source; decoding starts from
decoder_start_token_id; bad_words_ids and pad are never generated; ids come
from vocab.json; num_beams and max_length become the defaults.
"""

import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fanyi_ref.model import sinusoidal_table  # noqa: E402
from fanyi_ref.modeldir import Config, read_safetensors, save_model_dir  # noqa: E402


class Unsupported(Exception):
    """A MarianMT setting fanyi cannot represent."""


def load_state(marian_dir):
    st = os.path.join(marian_dir, "model.safetensors")
    if os.path.exists(st):
        return {k: v.float() for k, v in read_safetensors(st).items()}
    bin_path = os.path.join(marian_dir, "pytorch_model.bin")
    if os.path.exists(bin_path):
        state = torch.load(bin_path, map_location="cpu")
        return {k: v.float() for k, v in state.items() if torch.is_tensor(v)}
    raise Unsupported(f"{marian_dir}: neither model.safetensors nor pytorch_model.bin")


def strip_prefix(state):
    """Accepts MarianMTModel ('model.' prefix) and MarianModel (no prefix) state dicts."""
    if any(k.startswith("model.") for k in state):
        return {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
    return state


def check_config(c):
    def refuse(key, why):
        raise Unsupported(f"config.json: {key} = {c.get(key)!r}: {why}")

    if c.get("model_type", "marian") != "marian":
        refuse("model_type", "only MarianMT models are converted")
    if c.get("encoder_attention_heads") != c.get("decoder_attention_heads"):
        refuse("decoder_attention_heads", "fanyi needs the same number of heads in encoder and decoder")
    if c.get("encoder_ffn_dim") != c.get("decoder_ffn_dim"):
        refuse("decoder_ffn_dim", "fanyi needs the same feed-forward size in encoder and decoder")
    if c.get("activation_function", "swish") not in ("swish", "silu", "gelu", "relu"):
        refuse("activation_function", "fanyi supports swish (silu), gelu and relu")
    if c.get("normalize_embedding", False):
        refuse("normalize_embedding", "a LayerNorm after the embeddings is not part of the fanyi architecture")
    if c.get("d_model", 512) % c.get("encoder_attention_heads", 8):
        refuse("d_model", "must be a multiple of the number of heads")


def forbidden_ids(c):
    out = []
    for seq in c.get("bad_words_ids") or []:
        if len(seq) != 1:
            raise Unsupported(f"config.json: bad_words_ids entry {seq}: only single-token bans are supported")
        out.append(int(seq[0]))
    return sorted(set(out))


def positions_kind(state, cfg_json, d, n_pos):
    """'sinusoidal-halves' if the stored tables are the Marian sinusoid, else 'learned'."""
    table = sinusoidal_table(n_pos, d, "sinusoidal-halves")
    for side in ("encoder", "decoder"):
        w = state.get(f"{side}.embed_positions.weight")
        if w is not None and (w.shape != table.shape or (w - table).abs().max().item() > 1e-5):
            return "learned"
    if not cfg_json.get("static_position_embeddings", True) and f"encoder.embed_positions.weight" not in state:
        raise Unsupported("config.json: static_position_embeddings = false but no position table is stored")
    return "sinusoidal-halves"


def convert(marian_dir, out_dir, dtype="f32"):
    with open(os.path.join(marian_dir, "config.json")) as f:
        c = json.load(f)
    check_config(c)
    for name in ("source.spm", "target.spm", "vocab.json"):
        if not os.path.exists(os.path.join(marian_dir, name)):
            raise Unsupported(f"{marian_dir}: {name} is missing")
    with open(os.path.join(marian_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    if "<unk>" not in vocab:
        raise Unsupported("vocab.json has no '<unk>' entry")
    # Separate vocabularies (MarianTokenizer's separate_vocabs): target pieces map through target_vocab.json.
    separate = os.path.exists(os.path.join(marian_dir, "target_vocab.json"))
    tgt_vocab = vocab
    if separate:
        with open(os.path.join(marian_dir, "target_vocab.json"), encoding="utf-8") as f:
            tgt_vocab = json.load(f)

    state = strip_prefix(load_state(marian_dir))
    d, V = c["d_model"], c["vocab_size"]
    V_tgt = c.get("decoder_vocab_size") or V
    enc_layers, dec_layers = c["encoder_layers"], c["decoder_layers"]
    shared = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    if shared is None:
        raise Unsupported("the checkpoint has no shared.weight / encoder.embed_tokens.weight")
    if tuple(shared.shape) != (V, d):
        raise Unsupported(f"shared.weight has shape {tuple(shared.shape)}, config says [{V}, {d}]")
    if max(vocab.values()) >= V:
        raise Unsupported(f"vocab.json has id {max(vocab.values())} but the model has {V} embeddings")
    src_emb = state.get("encoder.embed_tokens.weight", shared)
    tgt_emb = state.get("decoder.embed_tokens.weight", shared)
    if tuple(tgt_emb.shape) != (V_tgt, d):
        raise Unsupported(f"decoder.embed_tokens.weight has shape {tuple(tgt_emb.shape)}, config says [{V_tgt}, {d}]")
    if max(tgt_vocab.values()) >= V_tgt:
        raise Unsupported(f"the target vocabulary has id {max(tgt_vocab.values())} but the decoder has {V_tgt}")
    share = src_emb.shape == tgt_emb.shape and torch.equal(src_emb, tgt_emb)
    lm_head = state.get("lm_head.weight", tgt_emb)
    tied = torch.equal(lm_head, tgt_emb)
    n_pos = c.get("max_position_embeddings", 512)
    pos_kind = positions_kind(state, c, d, n_pos)

    out = {"src_embed.weight": src_emb}
    if not share:
        out["tgt_embed.weight"] = tgt_emb
    if not tied:
        out["output.weight"] = lm_head
    bias = state.get("final_logits_bias")
    out["logits_bias"] = bias.reshape(-1) if bias is not None else torch.zeros(V_tgt)
    if pos_kind == "learned":
        out["encoder.pos.weight"] = state["encoder.embed_positions.weight"]
        out["decoder.pos.weight"] = state["decoder.embed_positions.weight"]

    names = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "o"}

    def take(src, dst):
        if src not in state:
            raise Unsupported(f"the checkpoint lacks tensor '{src}'")
        out[dst] = state[src]

    for side, n, cross in (("encoder", enc_layers, False), ("decoder", dec_layers, True)):
        for i in range(n):
            p = q = f"{side}.layers.{i}"  # the same layer prefix on both sides
            attns = [("self_attn", "self_attn")] + ([("encoder_attn", "cross_attn")] if cross else [])
            for hf, ours in attns:
                for hf_lin, our_lin in names.items():
                    for part in ("weight", "bias"):
                        take(f"{p}.{hf}.{hf_lin}.{part}", f"{q}.{ours}.{our_lin}.{part}")
                for part in ("weight", "bias"):
                    take(f"{p}.{hf}_layer_norm.{part}", f"{q}.{ours}_norm.{part}")
            for part in ("weight", "bias"):
                take(f"{p}.fc1.{part}", f"{q}.ffn.fc1.{part}")
                take(f"{p}.fc2.{part}", f"{q}.ffn.fc2.{part}")
                take(f"{p}.final_layer_norm.{part}", f"{q}.ffn_norm.{part}")

    act = {"silu": "swish"}.get(c.get("activation_function", "swish"), c.get("activation_function", "swish"))
    pad = c.get("pad_token_id", V - 1)
    cfg = Config(
        src_vocab_size=V, tgt_vocab_size=V_tgt, d_model=d, n_heads=c["encoder_attention_heads"],
        d_ff=c["encoder_ffn_dim"], encoder_layers=enc_layers, decoder_layers=dec_layers, max_positions=n_pos,
        activation=act, norm="post", encoder_final_norm=False, decoder_final_norm=False,
        scale_embeddings=bool(c.get("scale_embedding", True)), positions=pos_kind, shared_embeddings=share,
        tied_output=tied, logits_bias=True, layernorm_eps=1e-5, pad_id=pad, eos_id=c.get("eos_token_id", 0),
        unk_id=vocab["<unk>"], decoder_start_id=c.get("decoder_start_token_id", pad),
        forbidden_ids=[i for i in forbidden_ids(c) if i != pad], source_eos=True, source_spm="source.spm",
        target_spm="target.spm", vocab="vocab.json", target_vocab="target_vocab.json" if separate else "",
        beam_size=int(c.get("num_beams") or 4),
        max_length=int(min(c.get("max_length") or n_pos, n_pos)), max_length_ratio=0.0,
        length_penalty=float(c.get("length_penalty", 1.0)))
    tmp = out_dir + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    files = ("source.spm", "target.spm", "vocab.json") + (("target_vocab.json",) if separate else ())
    save_model_dir(tmp, cfg, out, dtype, {n: os.path.join(marian_dir, n) for n in files})
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("marian_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "int8"])
    args = ap.parse_args(argv)
    try:
        cfg = convert(args.marian_dir, args.out_dir, args.dtype)
    except (Unsupported, OSError, json.JSONDecodeError, KeyError) as e:
        sys.exit(f"convert_marian: cannot convert: {e}")
    print(f"converted {args.marian_dir} -> {args.out_dir} ({args.dtype}; {cfg.encoder_layers}+{cfg.decoder_layers} "
          f"layers, d_model {cfg.d_model}, vocab {cfg.src_vocab_size}, positions {cfg.positions})")


if __name__ == "__main__":
    main()
