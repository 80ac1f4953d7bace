"""python scripts/train.py [Hydra overrides]   (= musicvae-train; usage and examples: src/musicvae/cli/train.py)"""

from musicvae.cli.train import main

if __name__ == "__main__":
    main()
