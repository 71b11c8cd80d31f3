#!/usr/bin/python3
"""Converts a Hugging Face MarianMT model directory (Opus-MT) into a fanyi model directory.

    /usr/bin/python3 tools/convert_marian.py MARIAN_DIR OUT_DIR [--dtype f32|f16|int8]

MARIAN_DIR holds config.json, model.safetensors or pytorch_model.bin,
source.spm, target.spm, vocab.json (and tokenizer_config.json). Only the
standard library and numpy are needed (tools/checkpoint_io.py reads the
weights; a pytorch_model.bin is unpickled with an allow-list, never run).
Any configuration fanyi cannot represent is refused with a message saying
which setting and why; nothing is written then, and the output directory
appears whole or not at all.

What the conversion keeps (MarianMTModel semantics): embeddings scaled by
sqrt(d_model) when scale_embedding; the stored position table (checked to be
the sin-half/cos-half sinusoid starting at 0, else kept as learned
positions); post-norm layers; the configured activation; final_logits_bias;
shared and tied embeddings; </s> appended to the source; decoding starts from
decoder_start_token_id; bad_words_ids and pad are never generated; ids come
from vocab.json. Generation settings come from generation_config.json when
present, else config.json, as Hugging Face reads them: num_beams,
length_penalty and early_stopping become the defaults, a forced EOS
(forced_eos_token_id, MarianConfig's default) becomes forced_eos, and
max_length, which counts the decoder start token and the forced EOS, becomes
the limit on the tokens before EOS. Settings fanyi's search lacks are refused.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import CheckpointError, read_safetensors, read_torch_zip, sinusoid_halves, write_fanyi_weights  # noqa: E402,E501


class Unsupported(Exception):
    """A MarianMT setting fanyi cannot represent."""


def load_state(marian_dir):
    st = os.path.join(marian_dir, "model.safetensors")
    bin_path = os.path.join(marian_dir, "pytorch_model.bin")
    try:
        if os.path.exists(st):
            state = read_safetensors(st)
        elif os.path.exists(bin_path):
            state = read_torch_zip(bin_path)
        else:
            raise Unsupported(f"{marian_dir}: neither model.safetensors nor pytorch_model.bin")
    except CheckpointError as e:
        raise Unsupported(str(e)) from None
    return {k: np.asarray(v, dtype=np.float32) for k, v in state.items() if v.dtype.kind == "f"}


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


# Generation settings as Hugging Face resolves them: generation_config.json when
# the model has one (absent keys take GenerationConfig's defaults), else the
# model's config.json on top of MarianConfig's defaults (forced EOS = id 0).
GENERATION_DEFAULTS = {"num_beams": 1, "max_length": 20, "length_penalty": 1.0, "early_stopping": False,
                       "forced_eos_token_id": None, "bad_words_ids": None, "min_length": 0,
                       "no_repeat_ngram_size": 0, "repetition_penalty": 1.0, "num_beam_groups": 1,
                       "do_sample": False, "forced_bos_token_id": None}


def generation_settings(marian_dir, c):
    path = os.path.join(marian_dir, "generation_config.json")
    if os.path.exists(path):
        with open(path) as f:
            g = json.load(f)
        source = "generation_config.json"
    else:
        g = {"forced_eos_token_id": 0, **c}
        source = "config.json"
    out = {k: g.get(k, v) if g.get(k) is not None else v for k, v in GENERATION_DEFAULTS.items()}

    def refuse(key, why):
        raise Unsupported(f"{source}: {key} = {out[key]!r}: {why}")

    eos = g.get("eos_token_id", c.get("eos_token_id", 0))
    if out["forced_eos_token_id"] not in (None, eos):
        refuse("forced_eos_token_id", f"fanyi can force only EOS ({eos}) at the length limit")
    if out["early_stopping"] not in (True, False):
        refuse("early_stopping", "fanyi supports true and false")
    for key, neutral in (("min_length", 0), ("num_beam_groups", 1), ("do_sample", False),
                         ("forced_bos_token_id", None)):
        if out[key] != neutral:
            refuse(key, "not supported by fanyi's search")
    if int(out["max_length"]) < 2:
        refuse("max_length", "must leave room for the decoder start token and one more")
    return out


def positions_kind(state, cfg_json, d, n_pos):
    """'sinusoidal-halves' if the stored tables are the Marian sinusoid, else 'learned'."""
    table = sinusoid_halves(n_pos, d)
    for side in ("encoder", "decoder"):
        w = state.get(f"{side}.embed_positions.weight")
        if w is not None and (w.shape != table.shape or np.abs(w - table).max() > 1e-5):
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
    share = src_emb.shape == tgt_emb.shape and np.array_equal(src_emb, tgt_emb)
    lm_head = state.get("lm_head.weight", tgt_emb)
    tied = lm_head.shape == tgt_emb.shape and np.array_equal(lm_head, tgt_emb)
    n_pos = c.get("max_position_embeddings", 512)
    pos_kind = positions_kind(state, c, d, n_pos)

    out = {"src_embed.weight": src_emb}
    if not share:
        out["tgt_embed.weight"] = tgt_emb
    if not tied:
        out["output.weight"] = lm_head
    bias = state.get("final_logits_bias")
    out["logits_bias"] = bias.reshape(-1) if bias is not None else np.zeros(V_tgt, dtype=np.float32)
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

    gen = generation_settings(marian_dir, c)
    forced = gen["forced_eos_token_id"] is not None
    # HF's max_length counts the decoder start token, and a forced EOS takes the last place.
    max_tokens = int(gen["max_length"]) - (2 if forced else 1)
    max_tokens = max(1, min(max_tokens, n_pos - (1 if forced else 0)))
    act = {"silu": "swish"}.get(c.get("activation_function", "swish"), c.get("activation_function", "swish"))
    pad = c.get("pad_token_id", V - 1)
    cfg = {
        "format": "fanyi", "format_version": 1,
        "src_vocab_size": V, "tgt_vocab_size": V_tgt, "d_model": d, "n_heads": c["encoder_attention_heads"],
        "d_ff": c["encoder_ffn_dim"], "encoder_layers": enc_layers, "decoder_layers": dec_layers,
        "max_positions": n_pos, "activation": act, "norm": "post", "encoder_final_norm": False,
        "decoder_final_norm": False, "scale_embeddings": bool(c.get("scale_embedding", True)),
        "positions": pos_kind, "shared_embeddings": bool(share), "tied_output": bool(tied), "logits_bias": True,
        "layernorm_eps": 1e-5, "pad_id": pad, "eos_id": c.get("eos_token_id", 0), "unk_id": vocab["<unk>"],
        "decoder_start_id": c.get("decoder_start_token_id", pad),
        "forbidden_ids": [i for i in forbidden_ids(gen) if i != pad], "source_eos": True,
        "source_spm": "source.spm", "target_spm": "target.spm", "vocab": "vocab.json",
        "target_vocab": "target_vocab.json" if separate else "", "weights": "model.safetensors",
        "beam_size": int(gen["num_beams"]), "max_length": max_tokens, "max_length_ratio": 0.0,
        "length_penalty": float(gen["length_penalty"]), "forced_eos": forced,
        "early_stopping": bool(gen["early_stopping"]),
        "no_repeat_ngram_size": int(gen["no_repeat_ngram_size"]),
        "repetition_penalty": float(gen["repetition_penalty"]),
    }
    # Written beside the destination and renamed into place: never a half-written model.
    tmp = out_dir + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    files = ("source.spm", "target.spm", "vocab.json") + (("target_vocab.json",) if separate else ())
    for name in files:
        shutil.copyfile(os.path.join(marian_dir, name), os.path.join(tmp, name))
    write_fanyi_weights(os.path.join(tmp, "model.safetensors"), out, dtype)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
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
    print(f"converted {args.marian_dir} -> {args.out_dir} ({args.dtype}; {cfg['encoder_layers']}+"
          f"{cfg['decoder_layers']} layers, d_model {cfg['d_model']}, vocab {cfg['src_vocab_size']}, "
          f"positions {cfg['positions']})")


if __name__ == "__main__":
    main()
