"""python scripts/sample.py ckpt=PATH mode=... [overrides]   (= musicvae-sample; usage and examples: src/musicvae/cli/sample.py)"""

from musicvae.cli.sample import main

if __name__ == "__main__":
    main()
