"""Write MIDI from a trained checkpoint.
python scripts/sample.py ckpt=PATH mode=prior|reconstruct|interpolate|edit|shift|transfer [overrides]"""

from musicvae.cli.sample import main

if __name__ == "__main__":
    main()
