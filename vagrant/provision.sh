#!/usr/bin/env bash
# Provisions one ringlab VM: Python for the node's venv, iptables for partitions, chrony as the
# time source the clock nemesis resets from, a Toxiproxy server for latency, the harness key.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Pinned so every VM runs the same proxy; bump deliberately.
TOXIPROXY_VERSION="2.12.0"

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  python3 python3-venv iptables chrony sudo procps curl ca-certificates >/dev/null

# The node's venv is created by the harness (python3 -m venv); nothing Python-level is installed here.
systemctl enable --now chrony >/dev/null

# Toxiproxy server (latency nemesis): the upstream release binary as a systemd service bound to the
# private network only.
if ! command -v toxiproxy-server >/dev/null; then
  arch=$(dpkg --print-architecture)
  curl -fsSL -o /usr/local/bin/toxiproxy-server \
    "https://github.com/Shopify/toxiproxy/releases/download/v${TOXIPROXY_VERSION}/toxiproxy-server-linux-${arch}"
  chmod 0755 /usr/local/bin/toxiproxy-server
fi
addr=$(ip -4 -o addr show | awk -v net="${RINGLAB_NET:-192.168.56}." '$4 ~ "^"net {split($4, a, "/"); print a[1]; exit}')
cat > /etc/systemd/system/toxiproxy.service <<UNIT
[Unit]
Description=Toxiproxy server for ringlab's latency nemesis
After=network-online.target

[Service]
ExecStart=/usr/local/bin/toxiproxy-server -host ${addr:-0.0.0.0} -port 8474
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now toxiproxy >/dev/null

# The harness logs in as root with its own key (iptables and clock_settime need root).
if [ -f /tmp/ringlab_harness.pub ]; then
  install -d -m 0700 /root/.ssh
  grep -qxF "$(cat /tmp/ringlab_harness.pub)" /root/.ssh/authorized_keys 2>/dev/null \
    || cat /tmp/ringlab_harness.pub >> /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
  rm -f /tmp/ringlab_harness.pub
fi
install -d -m 0755 /opt/ringlab
echo "provisioned $(hostname): $(python3 --version), $(iptables --version), chrony, toxiproxy ${TOXIPROXY_VERSION}"
