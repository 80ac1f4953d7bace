"""python scripts/evaluate.py ckpt=PATH control=true [overrides]   (= musicvae-evaluate; usage and examples: src/musicvae/cli/evaluate.py)"""

from musicvae.cli.evaluate import main

if __name__ == "__main__":
    main()
