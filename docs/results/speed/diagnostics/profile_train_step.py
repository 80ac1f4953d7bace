"""Diagnostic (not a benchmark): one training step of each side of `benchmark.py compare`, timed 3x and
profiled with torch.profiler (ops by self CPU time).   OMP_NUM_THREADS=2 python profile_train_step.py"""

import time

import torch
from torch.profiler import profile

from musicvae.benchmarks.compare import CompareBenchSize, XTransformersVAE, our_vae
from musicvae.benchmarks.train import benchmark_loss

size = CompareBenchSize()
torch.manual_seed(0)
ours = our_vae(size, size.seq_len).train()
theirs = XTransformersVAE(size, size.seq_len).train()
tokens = torch.randint(3, size.vocab_size, (size.batch_size, size.seq_len))
mask = torch.ones_like(tokens, dtype=torch.bool)


def ours_forward(t, m):
    out = ours(t, m, sample=True)
    return out.logits, out.mu, out.logvar


sides = {
    "ours": (ours_forward, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
    "theirs": (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4)),
}


def step(name):
    forward, opt = sides[name]
    loss = benchmark_loss(*forward(tokens, mask), tokens, mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


for name in sides:
    step(name)
    step(name)
for name in sides:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step(name)
        times.append(time.perf_counter() - t0)
    print(name, "step seconds", sorted(times))
for name in sides:
    with profile() as prof:
        step(name)
    print(name)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
