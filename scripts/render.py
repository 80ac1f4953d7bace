"""python scripts/render.py PATH... [--format ogg|flac|wav]   (= musicvae-render; usage and examples: src/musicvae/cli/render.py)"""

from musicvae.cli.render import main

if __name__ == "__main__":
    main()
