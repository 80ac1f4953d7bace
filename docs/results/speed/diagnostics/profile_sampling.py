"""Diagnostic: torch.profiler over one cached decode of 512 tokens (the compare size), ops by self CPU time
and by input shape.   OMP_NUM_THREADS=2 python profile_sampling.py"""

import torch
from torch.profiler import profile

from musicvae.benchmarks.compare import CompareBenchSize, our_vae
from musicvae.benchmarks.sample import NoEOSMusicVAE
from musicvae.generation.decode import SamplingConfig, sample_tokens

LENGTH = 512
size = CompareBenchSize()
torch.manual_seed(0)
ours = our_vae(size, LENGTH + 1, cls=NoEOSMusicVAE).eval()
z = torch.randn(size.sample_batch, size.latent_dim)
sample_tokens(ours, z, SamplingConfig(max_tokens=16))  # warm-up
with profile(record_shapes=True) as prof:
    sample_tokens(ours, z, SamplingConfig(max_tokens=LENGTH))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12))
