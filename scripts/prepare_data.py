"""Export a corpus if needed, tokenize it into cached bar-aligned segments, print a summary.

python scripts/prepare_data.py data=bach
python scripts/prepare_data.py data=midi_dir data.path=/some/folder data.bars=8
"""

from musicvae.cli.prepare_data import main

if __name__ == "__main__":
    main()
