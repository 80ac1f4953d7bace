"""python scripts/prepare_data.py data=NAME [overrides]   (= musicvae-prepare-data; usage and examples: src/musicvae/cli/prepare_data.py)"""

from musicvae.cli.prepare_data import main

if __name__ == "__main__":
    main()
