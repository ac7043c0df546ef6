"""Prompts the arena draws from when a listener leaves the prompt empty (also the Generate tab's examples)."""

from __future__ import annotations

PROMPT_BANK: tuple[str, ...] = (
    "upbeat techno with a driving kick and a bright synth lead",
    "calm ambient piano with soft pads, slow and spacious", "energetic rock with distorted guitars and loud drums",
    "smooth jazz trio: walking bass, brushed drums and piano", "sad classical strings in a minor key",
    "laid-back hip-hop beat with a mellow electric piano", "cheerful reggae groove with offbeat guitar chops",
    "gentle acoustic folk guitar, fingerpicked, warm and intimate", "dark cinematic drone with low brass and tension",
    "fast drum and bass with a deep rolling bassline", "happy ukulele tune with hand claps",
    "slow blues with an expressive lead guitar", "dreamy synthwave with arpeggios and a retro drum machine",
    "festive brass band march", "minimal house track with a warm bass and crisp hi-hats",
    "baroque harpsichord piece in a major key", "lo-fi chill beat with vinyl crackle and soft keys",
    "epic orchestral theme with timpani and horns", "bossa nova with nylon guitar and light percussion",
    "heavy metal riff with double bass drums", "playful flute melody over pizzicato strings",
    "meditative solo cello, slow and calm", "funky disco groove with slap bass and strings",
    "celtic fiddle reel, lively and bright",
)
