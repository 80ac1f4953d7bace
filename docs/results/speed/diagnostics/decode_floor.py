"""Diagnostic: the decoder's cached decode (512 tokens, batch 8, the compare size) against a hand-written
loop of the same ops on the same weights (no module calls, no conditioning hooks): the overhead left in
ours.   OMP_NUM_THREADS=2 python decode_floor.py"""

import time

import torch
import torch.nn.functional as F

from musicvae.benchmarks.compare import CompareBenchSize, our_vae
from musicvae.benchmarks.sample import NoEOSMusicVAE

LENGTH = 512
size = CompareBenchSize()
torch.manual_seed(0)
decoder = our_vae(size, LENGTH + 1, cls=NoEOSMusicVAE).eval().decoder
b, h, dh = size.sample_batch, size.heads, size.d_model // size.heads
z = torch.randn(b, size.latent_dim)


def bare_loop() -> None:
    keys = [torch.empty(b, h, LENGTH + 1, dh) for _ in decoder.blocks]
    values = [torch.empty(b, h, LENGTH + 1, dh) for _ in decoder.blocks]
    w = decoder.cond.proj[0](z)[:, None]  # (B, 1, D): in-attention, post_norm
    tok = torch.full((b, 1), 1)
    for t in range(LENGTH):
        x = decoder.embed.tok(tok) + decoder.embed.pos.weight[t]
        for i, blk in enumerate(decoder.blocks):
            a = blk.ln_attn(x) + w
            q = blk.attn.q(a).view(b, 1, h, dh).transpose(1, 2)
            k, v = blk.attn.kv(a).chunk(2, -1)
            keys[i][:, :, t] = k.view(b, h, dh)
            values[i][:, :, t] = v.view(b, h, dh)
            y = F.scaled_dot_product_attention(q, keys[i][:, :, : t + 1], values[i][:, :, : t + 1])
            x = x + blk.attn.out(y.transpose(1, 2).reshape(b, 1, h * dh))
            x = x + blk.ff(blk.ln_ff(x))
        logits = decoder.head(decoder.ln_out(x))[:, -1]
        tok = torch.multinomial(logits.softmax(-1), 1)


def ours() -> None:
    cache = decoder.new_cache(LENGTH + 1)
    tok = torch.full((b, 1), 1)
    for _ in range(LENGTH):
        decoder(tok, z, cache)


with torch.inference_mode():
    bare_loop()
    for name, run in (("bare loop", bare_loop), ("decoder", ours)) * 2:
        t0 = time.perf_counter()
        run()
        print(f"{name}: {time.perf_counter() - t0:.2f} s for {LENGTH} steps")
