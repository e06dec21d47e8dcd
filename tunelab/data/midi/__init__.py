"""The MIDI pipeline: ``grid`` (parse, filter, quantize), ``codec`` (tokens), ``remi``
(MidiTok's REMI), ``chorales`` (the built-in Bach chorales), ``prepare`` (a collection ->
a data directory). The names most code needs are re-exported here."""

from tunelab.data.midi.codec import (
    ENCODINGS,
    Codec,
    OnsetsCodec,
    StepsCodec,
    codec_from_meta,
    make_codec,
)
from tunelab.data.midi.grid import (
    DEFAULT_QPM,
    N_KEYS,
    PITCH_HI,
    PITCH_LO,
    Grid,
    Rejected,
    grid_to_score,
    pitch_name,
    quantize,
)

__all__ = [
    "DEFAULT_QPM",
    "ENCODINGS",
    "N_KEYS",
    "PITCH_HI",
    "PITCH_LO",
    "Codec",
    "Grid",
    "OnsetsCodec",
    "Rejected",
    "StepsCodec",
    "codec_from_meta",
    "grid_to_score",
    "make_codec",
    "pitch_name",
    "quantize",
]
