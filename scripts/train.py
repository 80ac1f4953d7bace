"""Train a music VAE.  python scripts/train.py [Hydra overrides]   (see configs/train.yaml)

python scripts/train.py model/conditioning=cross_attention kl=cyclical kl.free_bits=0.25
python scripts/train.py -m experiment=collapse_compare        # every conditioning, one after the other
python scripts/train.py trainer=ddp_cpu                       # DDP on 2 CPU processes (trainer=ddp: every GPU)
python scripts/train.py -m experiment=collapse_compare hydra/launcher=parallel   # or local, slurm: README
"""

from musicvae.cli.train import main

if __name__ == "__main__":
    main()
