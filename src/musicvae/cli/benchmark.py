"""Benchmarks: musicvae-benchmark NAME [hydra overrides...]   (or python scripts/benchmark.py NAME ...)

python scripts/benchmark.py data                         # tokenizing speed, cached load
python scripts/benchmark.py data data=folk data.limit_files=300
python scripts/benchmark.py train [device=cuda d_model=512 layers=6 batch_size=32 seq_len=512]
python scripts/benchmark.py train latent=bar [bars=4]    # one latent per bar
python scripts/benchmark.py sample [device=cuda length=512 batch_size=8 mode=cross_attention]
python scripts/benchmark.py sample latent=bar [bars=16 length=1024]   # one latent per bar, a Bar every length/bars
python scripts/benchmark.py compare [device=cuda what=train|sample|both d_model=128 layers=2]  # vs x-transformers
python scripts/benchmark.py audio [path=data/midi/bach files=40 formats=ogg,flac,wav]   # MIDI -> audio speed and size
"""

from __future__ import annotations

import sys

from musicvae.benchmarks import audio as audio_bench
from musicvae.benchmarks import compare as compare_bench
from musicvae.benchmarks import sample as sample_bench
from musicvae.benchmarks import train as train_bench
from musicvae.benchmarks.data import run_data_benchmark
from musicvae.cli import CONFIG_DIR
from musicvae.errors import UserError, exit_on_user_error

# name → function(config_dir, overrides)
BENCHMARKS = {
    "data": run_data_benchmark,
    "train": train_bench.main,
    "sample": sample_bench.main,
    "compare": compare_bench.main,  # needs the [bench] extra (x-transformers); says so when missing
    "audio": audio_bench.main,
}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        given = f"unknown benchmark {argv[0]!r}" if argv else "no benchmark given"
        raise UserError(f"{given}: choose one of {', '.join(BENCHMARKS)} (python scripts/benchmark.py data)")
    BENCHMARKS[argv[0]](str(CONFIG_DIR), argv[1:])


if __name__ == "__main__":
    main()
