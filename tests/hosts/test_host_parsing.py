"""Pure parts of the host deploy (no root needed): host lists, ssh-config, iptables counters, quoting."""

from __future__ import annotations

import shlex

import pytest

from harness.deploy.ssh import nodes_arg, parse_host, parse_nodes_file, parse_nodes_list, quote_command
from harness.deploy.vagrant import VagrantError, parse_ssh_config
from nemesis.iptables import parse_counters


def test_parse_host_forms() -> None:
    assert parse_host("10.0.0.1") .__dict__ == {"host": "10.0.0.1", "port": 22, "username": None, "name": None,
                                                "address": None, "key_filename": None}
    h = parse_host("admin@db1.example:2222")
    assert (h.username, h.host, h.port) == ("admin", "db1.example", 2222)
    h = parse_host("[fd00::5]:2200")
    assert (h.host, h.port) == ("fd00::5", 2200)
    for bad in ("@h", "h:xx", "h:70000", "[fd00::1", ""):
        with pytest.raises(ValueError):
            parse_host(bad)


def test_nodes_file_names_options_and_errors() -> None:
    hosts = parse_nodes_file("# comment\nroot@10.0.0.11 name=a\n\n10.0.0.12:2222 address=192.168.1.2 key=/k\n")
    assert [h.name for h in hosts] == ["a", "n2"]
    assert (hosts[1].port, hosts[1].address, hosts[1].key_filename) == (2222, "192.168.1.2", "/k")
    with pytest.raises(ValueError, match="hosts.txt line 2: unknown option 'colour=red'"):
        parse_nodes_file("h1\nh2 colour=red\n", "hosts.txt")
    with pytest.raises(ValueError, match="duplicate node names n1"):
        parse_nodes_file("h1 name=n1\nh2 name=n1\n")
    with pytest.raises(ValueError, match="no hosts"):
        parse_nodes_file("# nothing\n")
    assert [h.host for h in parse_nodes_list("a, b,root@c")] == ["a", "b", "c"]
    assert nodes_arg("5") == 5 and nodes_arg("a,b") == "a,b"
    with pytest.raises(ValueError, match="--nodes entry 2"):
        nodes_arg("a,b:zz")


def test_quote_command_is_shell_safe() -> None:
    cmd = quote_command(["echo", "a b", "$(rm -rf /)", "it's"])
    assert shlex.split(cmd) == ["echo", "a b", "$(rm -rf /)", "it's"]
    assert quote_command("already; a script") == "already; a script"


SSH_CONFIG = """\
Host n1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  IdentityFile "/home/me/ringlab/vagrant/.vagrant/machines/n1/virtualbox/private_key"

Host n2
  HostName 192.168.121.40
  User vagrant
  Port 22
  IdentityFile /home/me/.vagrant.d/insecure_private_key
"""


def test_vagrant_ssh_config() -> None:
    hosts = parse_ssh_config(SSH_CONFIG)
    assert [(h.name, h.host, h.port, h.username, h.address) for h in hosts] == [
        ("n1", "127.0.0.1", 2222, "vagrant", "192.168.56.11"),
        ("n2", "192.168.121.40", 22, "vagrant", "192.168.56.12"),
    ]
    assert hosts[0].key_filename.endswith("n1/virtualbox/private_key")
    with pytest.raises(VagrantError, match="no hosts"):
        parse_ssh_config("")


def test_iptables_counters() -> None:
    text = """\
Chain RINGLAB-INPUT (1 references)
    pkts      bytes target     prot opt in     out     source               destination
      12      720 DROP       all  --  *      *       10.77.0.12           0.0.0.0/0
       0        0 DROP       all  --  *      *       10.77.0.13           0.0.0.0/0
"""
    rules = parse_counters(text)
    assert [(r.packets, r.bytes, r.target, r.source) for r in rules] == [
        (12, 720, "DROP", "10.77.0.12"), (0, 0, "DROP", "10.77.0.13")]
