#!/usr/bin/env python3
"""pesq_score.py REF.wav DEG.wav nb|wb — PESQ (ITU-T P.862 / P.862.2 via PyPI `pesq`) of a
degraded recording against its reference. Both WAVs: 16-bit mono at 8000 (nb) or 16000 (wb) Hz.
The degraded signal is first aligned to the reference by cross-correlation (a call adds a delay)
and cut to the reference's length, so PESQ compares the same speech. Prints the score."""
import sys
import wave

import numpy as np
from pesq import pesq


def read(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, path
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    return rate, x / 32768.0


def main():
    ref_path, deg_path, mode = sys.argv[1:4]
    ra, ref = read(ref_path)
    rb, deg = read(deg_path)
    assert ra == rb, f"rates differ: {ra} {rb}"
    n = 1 << int(np.ceil(np.log2(len(ref) + len(deg))))
    c = np.fft.irfft(np.conj(np.fft.rfft(ref, n)) * np.fft.rfft(deg, n), n)
    lag = int(np.argmax(c[: len(deg)]))  # deg lags ref by `lag` samples (a call only delays)
    aligned = deg[lag : lag + len(ref)]
    if len(aligned) < len(ref):
        aligned = np.concatenate([aligned, np.zeros(len(ref) - len(aligned))])
    print(f"{pesq(ra, ref, aligned, mode):.2f}")


if __name__ == "__main__":
    main()
