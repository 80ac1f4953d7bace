"""Attribute vectors of a checkpoint.  python scripts/attributes.py ckpt=PATH  -> PATH's <name>.attributes.pt"""

from musicvae.cli.attributes import main

if __name__ == "__main__":
    main()
