"""Pulumi code for ha-web: settings, node roles and the HaWebCluster component."""
