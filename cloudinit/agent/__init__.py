"""ha-web-agent: moves the cluster's reserved IP to this droplet when keepalived makes it MASTER.

Installed on every droplet as the package /usr/local/lib/ha-web/ha_web_agent (unpacked from
cloudinit/files/ha-web-agent.pyz.gz, built by cloudinit/agent_archive.py) and run through the
launcher /usr/local/bin/ha-web-agent. docs/internals.md describes its settings, files, users
and the failover path. It uses the standard library only, because it runs on the
distribution's python3 before anything else is installed. Modules import each other
relatively only, so the package works under either name: ha_web_agent on a droplet,
cloudinit.agent in this repository.

Subcommands: notify, claim, peers, apply-peers, reconcile, status, maintenance.
"""
