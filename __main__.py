"""ha-web: a highly available web service on DigitalOcean, one stack per environment."""

import pulumi

from components.cluster import HaWebCluster, HaWebClusterArgs
from components.settings_reader import read_settings

settings, secrets = read_settings(pulumi.Config("ha-web"), pulumi.get_stack())
cluster = HaWebCluster("ha-web", HaWebClusterArgs(settings=settings, secrets=secrets))

pulumi.export("reservedIp", cluster.reserved_ip)
pulumi.export("url", cluster.url)
pulumi.export("nodes", cluster.nodes)
