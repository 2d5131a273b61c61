"""HaWebCluster: a VPC, a reserved IP, and N droplets that keep it answering."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do
import pulumi_random as random

from cloudinit.inputs import DropletInputs
from cloudinit.render import render_user_data
from components.settings import Secrets, Settings
from components.topology import NodePlan, plan_nodes

PROJECT_ENVIRONMENTS = {"dev": "Development", "staging": "Staging", "prod": "Production"}


@dataclass(frozen=True)
class HaWebClusterArgs:
    settings: Settings
    secrets: Secrets


def _vrrp_password(
    name: str, args: HaWebClusterArgs, parent: pulumi.Resource
) -> pulumi.Output[str] | None:
    """VRRPv3 carries no authentication, so only a VRRPv2 cluster needs a password."""
    if args.settings.vrrp.version != 2:
        return None
    if args.secrets.vrrp_password is not None:
        return args.secrets.vrrp_password
    # Letters and digits only: nothing keepalived's config syntax reads specially.
    generated = random.RandomPassword(
        f"{name}-vrrp-password",
        length=8,
        special=False,
        upper=True,
        lower=True,
        numeric=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.secret(generated.result)


def _user_data(
    args: HaWebClusterArgs,
    node: NodePlan,
    nodes: list[NodePlan],
    reserved_ip: pulumi.Output[str],
    vrrp_password: pulumi.Output[str] | None,
) -> pulumi.Output[str]:
    settings = args.settings
    rendered = pulumi.Output.all(reserved_ip, args.secrets.failover_token, vrrp_password).apply(
        lambda values: render_user_data(
            DropletInputs(
                settings=settings,
                node=node,
                nodes=tuple(nodes),
                reserved_ip=values[0],
                failover_token=values[1],
                vrrp_password=values[2],
            )
        )
    )
    # The user-data carries the failover token: keep it a secret in state.
    return pulumi.Output.secret(rendered)


def _node_output(node: NodePlan, droplet: do.Droplet) -> pulumi.Output[dict[str, object]]:
    return pulumi.Output.all(droplet.ipv4_address, droplet.ipv4_address_private).apply(
        lambda ips: {
            "name": node.name,
            "role": node.role,
            "publicIp": ips[0],
            "privateIp": ips[1],
        }
    )


class HaWebCluster(pulumi.ComponentResource):
    reserved_ip: pulumi.Output[str]
    """The address users reach. The cluster assigns it; Pulumi never does."""
    url: pulumi.Output[str]
    """http:// URL of the reserved IP."""
    nodes: pulumi.Output[list[dict[str, object]]]
    """Per droplet: name, role, publicIp, privateIp."""

    def __init__(
        self, name: str, args: HaWebClusterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ha-web:index:HaWebCluster", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self)
        plan = plan_nodes(settings)

        vpc = do.Vpc(
            f"{name}-vpc",
            name=f"{settings.name_prefix}-vpc",
            region=settings.region,
            ip_range=settings.vpc_ip_range,
            opts=child,
        )
        tag = do.Tag(f"{name}-tag", name=settings.cluster_tag, opts=child)
        # Created unassigned, and its droplet is ignored: after a failover the
        # cluster holds the truth, and `pulumi up` must not move the IP back
        # to a possibly dead droplet (DESIGN decision 1).
        reserved = do.ReservedIp(
            f"{name}-reserved-ip",
            region=settings.region,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["droplet_id"]),
        )
        vrrp_password = _vrrp_password(name, args, self)

        droplets = [
            do.Droplet(
                f"{name}-{node.index}",
                name=node.name,
                region=settings.region,
                size=settings.droplet_size,
                image=settings.image,
                vpc_uuid=vpc.id,
                tags=[tag.id],
                monitoring=True,
                ssh_keys=list(settings.ssh_keys),
                user_data=_user_data(args, node, plan, reserved.ip_address, vrrp_password),
                opts=child,
            )
            for node in plan
        ]
        do.Project(
            f"{name}-project",
            name=settings.name_prefix,
            description="ha-web: a highly available web service behind a reserved IP",
            purpose="Web Application",
            environment=PROJECT_ENVIRONMENTS.get(settings.stack, "Development"),
            resources=[*(d.droplet_urn for d in droplets), reserved.reserved_ip_urn],
            opts=child,
        )

        self.reserved_ip = reserved.ip_address
        self.url = reserved.ip_address.apply(lambda ip: f"http://{ip}/")
        self.nodes = pulumi.Output.all(
            *(_node_output(n, d) for n, d in zip(plan, droplets, strict=True))
        )
        self.register_outputs(
            {"reservedIp": self.reserved_ip, "url": self.url, "nodes": self.nodes}
        )
