#!/usr/bin/env bash
# Installs the Debian packages that host tests (netns + sshd + iptables) and browser tests need.
# Only as root; otherwise those tests skip themselves with a message saying what is missing.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root, skipping Debian packages (host and browser tests will be skipped)"
  exit 0
fi
# zookeeper (with its Java runtime): --coordination zookeeper and tests/cluster/test_zookeeper.py.
want=(iproute2 iptables openssh-server openssh-client chromium chromium-driver zookeeper)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "system-deps: installing ${missing[*]}"
  # A failed install must not fail `make test`: the tests that need a package skip and say so.
  if ! { apt-get update -qq >/dev/null && \
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "system-deps: WARNING: could not install ${missing[*]}; host and browser tests that need them will skip" >&2
  fi
fi
