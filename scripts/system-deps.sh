#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that host tests (netns + sshd + iptables), browser tests and
# ZooKeeper tests need. Only as root; otherwise those tests skip themselves saying what is missing.
# Packages this distribution does not have (Ubuntu has no `chromium` deb, only a snap) are named
# and left out, so the rest still installs; the tests needing them skip.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: not root, skipping system packages (host and browser tests will be skipped)"
  exit 0
fi
# zookeeper (with its Java runtime): --coordination zookeeper and tests/cluster/test_zookeeper.py.
# chromium: tests/e2e/test_report_browser.py and bench/report.py (Playwright drives it directly).
want=(iproute2 iptables openssh-server openssh-client chromium zookeeper)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! apt-get update -qq >/dev/null; then
  echo "system-deps: WARNING: apt-get update failed; not installing ${missing[*]} (tests that need them skip)" >&2
  exit 0
fi
available=()
for p in "${missing[@]}"; do
  if apt-cache show "$p" >/dev/null 2>&1; then
    available+=("$p")
  else
    echo "system-deps: $p is not packaged for this system; the tests that need it will skip"
  fi
done
[ ${#available[@]} -eq 0 ] && exit 0
echo "system-deps: installing ${available[*]}"
# A failed install must not fail `make test`: the tests that need a package skip and say so.
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${available[@]}" >/dev/null; then
  echo "system-deps: WARNING: could not install ${available[*]}; the tests that need them will skip" >&2
fi
