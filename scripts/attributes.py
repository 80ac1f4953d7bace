"""python scripts/attributes.py ckpt=PATH   (= musicvae-attributes; usage and examples: src/musicvae/cli/attributes.py)"""

from musicvae.cli.attributes import main

if __name__ == "__main__":
    main()
