"""Render MIDI files to audio.  python scripts/render.py PATH... [--format ogg|wav] [--soundfont F.sf2]

Each PATH is a MIDI file or a folder (searched recursively); the audio goes beside each file (a.mid ->
a.ogg). Files already rendered are left alone unless --overwrite; a file that is not MIDI is counted and
named, and the others go on. See musicvae/generation/audio.py.
"""

from musicvae.cli.render import main

if __name__ == "__main__":
    main()
