"""Diagnostic: cached decodes of 512 tokens (the compare size) from one model, eager or compiled, one
warm-up (which compiles) and three timed decodes.
    OMP_NUM_THREADS=2 python compiled_sampling.py eager|plain|options|global
plain: compile_parts(); options: compile_parts(frozen=True) (freezing passed per compile, what sample.py
uses); global: torch._inductor.config.freezing set for the whole process, then compile_parts()."""

import sys
import time

import torch
import torch._inductor.config as inductor_config

from musicvae.benchmarks.compare import CompareBenchSize, our_vae
from musicvae.benchmarks.sample import NoEOSMusicVAE
from musicvae.generation.decode import SamplingConfig, sample_tokens

LENGTH = 512
how = sys.argv[1]
size = CompareBenchSize()
torch.manual_seed(0)
model = our_vae(size, LENGTH + 1, cls=NoEOSMusicVAE).eval()
if how == "global":
    inductor_config.freezing = True
    model.compile_parts()
elif how == "options":
    model.compile_parts(frozen=True)
elif how == "plain":
    model.compile_parts()
z = torch.randn(size.sample_batch, size.latent_dim)
for run in ("warm-up", 1, 2, 3):
    t0 = time.perf_counter()
    sample_tokens(model, z, SamplingConfig(max_tokens=LENGTH))
    print(how, run, f"{time.perf_counter() - t0:.2f} s", flush=True)
