"""The procedural, captioned music corpus: styles -> compositions -> MIDI -> SoundFont synth -> WAV.

``build_corpus`` (build.py) is the entry point; ``attributes`` holds the label vocabularies and
``load_manifest``. See DESIGN.md, "The embedded default".
"""
