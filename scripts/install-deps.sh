#!/usr/bin/env bash
# install-deps.sh: the Debian packages termphone needs to build and to run its tests.
# Idempotent: installs only what is missing. Uses sudo when not root.
#
#   build:  pkg-config libasound2-dev (cpal's ALSA backend), build-essential,
#           libdbus-1-dev (the keyring crate's Secret Service backend), cmake (the opus
#           crate builds its bundled libopus with it)
#   tests:  sip-tester (sipp peer), pulseaudio + pulseaudio-utils + libasound2-plugins
#           (headless audio devices, scripts/headless-audio.sh), sox espeak-ng (fixtures),
#           kamailio (registrar/proxy, tests/support/kamailio.rs) with its sqlite, tls and
#           websocket module packages (5.6.3-2 on Debian bookworm), baresip-core (peer UA,
#           tests/support/baresip.rs; 1.0.0 on bookworm), linphone-cli (linphonec, a second
#           peer UA for INFO DTMF and attended transfer, tests/support/linphone.rs; 5.1.65 on
#           bookworm), dbus + gnome-keyring (a private session bus and Secret Service for the
#           keyring tests), tmux (drives the TUI in tests/e2e_tui.rs)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
    build-essential pkg-config libasound2-dev libdbus-1-dev cmake
    sip-tester baresip-core linphone-cli
    kamailio kamailio-sqlite-modules kamailio-tls-modules kamailio-websocket-modules
    pulseaudio pulseaudio-utils libasound2-plugins alsa-utils
    sox espeak-ng dnsmasq-base
    dbus gnome-keyring
    procps ca-certificates tmux
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
