"""Benchmarks: python scripts/benchmark.py NAME [hydra overrides...]

python scripts/benchmark.py data                         # tokenizing speed, cached load
python scripts/benchmark.py data data=folk data.limit_files=300
python scripts/benchmark.py train [device=cuda d_model=512 layers=6 batch_size=32 seq_len=512]
python scripts/benchmark.py train latent=bar [bars=4]    # one latent per bar
python scripts/benchmark.py sample [device=cuda length=512 batch_size=8 mode=cross_attention]
python scripts/benchmark.py sample latent=bar [bars=16 length=1024]   # one latent per bar, a Bar every length/bars
python scripts/benchmark.py compare [device=cuda what=train|sample|both d_model=128 layers=2]  # vs x-transformers
python scripts/benchmark.py audio [path=data/midi/bach files=40 formats=ogg,wav]   # MIDI -> audio speed
"""

from musicvae.cli.benchmark import main

if __name__ == "__main__":
    main()
