"""MarianMT's forward pass written directly on a Hugging Face state dict.

Independent of fanyi_ref and of the converter: it follows the MarianMT
modeling code (q scaled by head_dim**-0.5 after projection, post-norm layers,
sinusoidal or stored positions from 0, scaled embeddings, final_logits_bias),
so a test can check that a converted model means what the original meant.
"""

import math

import torch
import torch.nn.functional as F

ACT = {"swish": F.silu, "silu": F.silu, "gelu": F.gelu, "relu": F.relu}


def _lin(state, name, x):
    return F.linear(x, state[name + ".weight"], state[name + ".bias"])


def _ln(state, name, x):
    return F.layer_norm(x, x.shape[-1:], state[name + ".weight"], state[name + ".bias"], 1e-5)


def _attn(state, name, x, mem, heads, mask):
    b, t, d = x.shape
    dh = d // heads
    q = _lin(state, name + ".q_proj", x) * dh ** -0.5
    k = _lin(state, name + ".k_proj", mem)
    v = _lin(state, name + ".v_proj", mem)

    def split(z):
        return z.view(b, -1, heads, dh).transpose(1, 2)

    w = torch.matmul(split(q), split(k).transpose(-1, -2))
    if mask is not None:
        w = w.masked_fill(mask, float("-inf"))
    out = torch.matmul(torch.softmax(w, -1), split(v)).transpose(1, 2).reshape(b, t, d)
    return _lin(state, name + ".out_proj", out)


@torch.no_grad()
def marian_logprobs(state, cfg, src_ids, tgt_ids):
    """Log-probs [len(tgt)+1, V]: teacher-forced decoding of tgt then EOS, for one sentence."""
    state = {k[len("model."):] if k.startswith("model.") else k: v.float() for k, v in state.items()}
    d, heads = cfg["d_model"], cfg["encoder_attention_heads"]
    act = ACT[cfg.get("activation_function", "swish")]
    scale = math.sqrt(d) if cfg.get("scale_embedding", True) else 1.0
    emb = state["shared.weight"]
    src = torch.tensor([list(src_ids) + [cfg["eos_token_id"]]])
    dec_in = torch.tensor([[cfg["decoder_start_token_id"]] + list(tgt_ids)])
    x = F.embedding(src, state.get("encoder.embed_tokens.weight", emb)) * scale
    x = x + state["encoder.embed_positions.weight"][: src.shape[1]]
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}"
        x = _ln(state, p + ".self_attn_layer_norm", x + _attn(state, p + ".self_attn", x, x, heads, None))
        h = _lin(state, p + ".fc2", act(_lin(state, p + ".fc1", x)))
        x = _ln(state, p + ".final_layer_norm", x + h)
    mem = x
    y = F.embedding(dec_in, state.get("decoder.embed_tokens.weight", emb)) * scale
    y = y + state["decoder.embed_positions.weight"][: dec_in.shape[1]]
    t = dec_in.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool).triu(1)
    for i in range(cfg["decoder_layers"]):
        p = f"decoder.layers.{i}"
        y = _ln(state, p + ".self_attn_layer_norm", y + _attn(state, p + ".self_attn", y, y, heads, causal))
        y = _ln(state, p + ".encoder_attn_layer_norm", y + _attn(state, p + ".encoder_attn", y, mem, heads, None))
        h = _lin(state, p + ".fc2", act(_lin(state, p + ".fc1", y)))
        y = _ln(state, p + ".final_layer_norm", y + h)
    logits = F.linear(y, state.get("lm_head.weight", emb)) + state["final_logits_bias"].reshape(-1)
    # MarianMTModel.adjust_logits_during_generation: pad can never be generated, so it is masked
    # before the log-softmax that generate() ranks by.
    logits[..., cfg["pad_token_id"]] = float("-inf")
    return torch.log_softmax(logits[0], -1)


def random_marian_state(cfg, seed=0, std=0.05):
    """A random MarianMTModel state dict with the exact Hugging Face names and shapes."""
    from fanyi_ref.model import sinusoidal_table
    g = torch.Generator().manual_seed(seed)
    d, V, f = cfg["d_model"], cfg["vocab_size"], cfg["encoder_ffn_dim"]
    V_tgt = cfg.get("decoder_vocab_size") or V

    def r(*shape):
        return torch.randn(*shape, generator=g) * std

    shared = r(V, d)
    shared[cfg["pad_token_id"]] = 0
    # Separate vocabularies (share_encoder_decoder_embeddings false): the decoder has its own table.
    target = shared if V_tgt == V and cfg.get("share_encoder_decoder_embeddings", True) else r(V_tgt, d)
    pos = sinusoidal_table(cfg["max_position_embeddings"], d, "sinusoidal-halves")
    st = {"model.shared.weight": shared, "model.encoder.embed_tokens.weight": shared,
          "model.decoder.embed_tokens.weight": target, "lm_head.weight": target,
          "final_logits_bias": r(1, V_tgt), "model.encoder.embed_positions.weight": pos,
          "model.decoder.embed_positions.weight": pos.clone()}

    def attn(prefix):
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            st[f"{prefix}.{n}.weight"] = r(d, d)
            st[f"{prefix}.{n}.bias"] = r(d)
        st[f"{prefix}_layer_norm.weight"] = 1 + r(d)
        st[f"{prefix}_layer_norm.bias"] = r(d)

    for side, n in (("encoder", cfg["encoder_layers"]), ("decoder", cfg["decoder_layers"])):
        for i in range(n):
            p = f"model.{side}.layers.{i}"
            attn(p + ".self_attn")
            if side == "decoder":
                attn(p + ".encoder_attn")
            st[p + ".fc1.weight"], st[p + ".fc1.bias"] = r(f, d), r(f)
            st[p + ".fc2.weight"], st[p + ".fc2.bias"] = r(d, f), r(d)
            st[p + ".final_layer_norm.weight"], st[p + ".final_layer_norm.bias"] = 1 + r(d), r(d)
    return st
