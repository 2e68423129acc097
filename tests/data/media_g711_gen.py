#!/usr/bin/env python3
"""Regenerate the G.711 golden vectors with Python's audioop (Sun g711.c); needs Python <= 3.12.

media_g711_decode.txt: "code ulaw_linear alaw_linear" for all 256 codes.
media_g711_{ulaw,alaw}_encode.txt: the encoder over all 65,536 i16 inputs, run-length coded:
"first_input code" each time the code changes (inputs ascending from -32768).
"""
import audioop, struct, warnings
warnings.simplefilter("ignore")

with open("media_g711_decode.txt", "w") as f:
    for c in range(256):
        u, = struct.unpack("<h", audioop.ulaw2lin(bytes([c]), 2))
        a, = struct.unpack("<h", audioop.alaw2lin(bytes([c]), 2))
        f.write(f"{c} {u} {a}\n")

pcm = struct.pack("<65536h", *range(-32768, 32768))
for name, enc in (("ulaw", audioop.lin2ulaw), ("alaw", audioop.lin2alaw)):
    codes = enc(pcm, 2)
    with open(f"media_g711_{name}_encode.txt", "w") as f:
        prev = None
        for i, c in enumerate(codes):
            if c != prev:
                f.write(f"{i - 32768} {c}\n")
                prev = c
