#!/usr/bin/env bash
# make-test-audio.sh: regenerate the audio fixtures in tests/data/ (committed; tests never run
# espeak-ng or sox themselves).
#
#   tests/data/speech-8k.wav         ~5 s of espeak-ng speech, 8 kHz 16-bit mono, peak ~ -3 dBFS
#   tests/data/speech-48k.wav        the same speech at 48 kHz (wide-band content up to the
#                                    synthesiser's 11 kHz), for wide-band quality benchmarks
#   tests/data/speech-8k-pcma.pcap   the same audio as RTP, PCMA (PT 8), 20 ms packets
#   tests/data/speech-8k-pcmu.pcap   the same audio as RTP, PCMU (PT 0), 20 ms packets
#
# The pcaps are what the sipp scenarios in tests/sipp/ play with <exec play_pcap_audio>.
# sipp rewrites the addresses and ports; only the RTP payload, timing and payload type matter.
# Needs: espeak-ng, sox, python3 (stdlib only). Output is deterministic for a given
# espeak-ng/sox version.
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/data
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

text="The quick brown fox jumps over the lazy dog. One, two, three, four, five. Testing termphone."
espeak-ng -v en-us -s 165 -w "$tmp/raw.wav" "$text"
# 8 kHz mono 16-bit; trim to 5 s; normalise the peak to -3 dBFS; no dither (deterministic).
sox "$tmp/raw.wav" -D -r 8000 -c 1 -b 16 "$tmp/8k.wav" trim 0 5 gain -n -3
cp "$tmp/8k.wav" "$out/speech-8k.wav"
sox "$tmp/raw.wav" -D -r 48000 -c 1 -b 16 "$out/speech-48k.wav" trim 0 5 gain -n -3

# G.711 payloads from the same 16-bit audio, by sox.
sox "$out/speech-8k.wav" -D -t raw -e a-law -b 8 -r 8000 -c 1 "$tmp/speech.al"
sox "$out/speech-8k.wav" -D -t raw -e u-law -b 8 -r 8000 -c 1 "$tmp/speech.ul"

python3 - "$tmp/speech.al" "$out/speech-8k-pcma.pcap" 8 "$tmp/speech.ul" "$out/speech-8k-pcmu.pcap" 0 <<'PY'
import struct, sys

def ip_checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF

def write(payload_path, pcap_path, pt):
    data = open(payload_path, "rb").read()
    frame = 160  # 20 ms at 8 kHz
    ssrc, seq0, ts0 = 0x7E57AB1E, 1000, 160000
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    sport, dport = 6000, 6002
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]  # Ethernet
    for i in range(0, len(data) // frame):
        chunk = data[i * frame:(i + 1) * frame]
        rtp = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | pt,
                          (seq0 + i) & 0xFFFF, (ts0 + i * frame) & 0xFFFFFFFF, ssrc) + chunk
        udp = struct.pack("!HHHH", sport, dport, 8 + len(rtp), 0) + rtp
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, dst)
        iph = iph[:10] + struct.pack("!H", ip_checksum(iph)) + iph[12:]
        eth = b"\x00" * 12 + b"\x08\x00"
        pkt = eth + iph + udp
        t_us = i * 20000
        out.append(struct.pack("<IIII", t_us // 1000000, t_us % 1000000, len(pkt), len(pkt)) + pkt)
    open(pcap_path, "wb").write(b"".join(out))

args = sys.argv[1:]
for j in range(0, len(args), 3):
    write(args[j], args[j + 1], int(args[j + 2]))
PY
ls -l "$out"/speech-8k*
