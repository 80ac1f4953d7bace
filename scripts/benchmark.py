"""python scripts/benchmark.py NAME [overrides]   (= musicvae-benchmark; usage and examples: src/musicvae/cli/benchmark.py)"""

from musicvae.cli.benchmark import main

if __name__ == "__main__":
    main()
