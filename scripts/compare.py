"""python scripts/compare.py SWEEP_DIR   (= musicvae-compare; usage and examples: src/musicvae/cli/compare.py)"""

from musicvae.cli.compare import main

if __name__ == "__main__":
    main()
