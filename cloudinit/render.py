"""Render one droplet's `#cloud-config` user-data."""

from __future__ import annotations

from typing import Any

import jinja2
import yaml

from cloudinit import boot
from cloudinit.context import template_context
from cloudinit.droplet_files import droplet_files
from cloudinit.inputs import DropletInputs

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("cloudinit", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=jinja2.select_autoescape(["html.j2"]),
)


class _CloudConfigDumper(yaml.SafeDumper):
    """Multi-line file contents as literal blocks, so the document stays readable."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_CloudConfigDumper.add_representer(str, _str_presenter)


def render_user_data(inputs: DropletInputs) -> str:
    context = template_context(inputs)

    def render(template: str) -> str:
        return _ENV.get_template(template).render(context)

    document = {
        "bootcmd": boot.bootcmd(inputs),
        "users": boot.system_users(),
        "package_update": True,
        "packages": boot.packages(inputs),
        "write_files": [f.as_cloud_config() for f in droplet_files(inputs, render)],
        "runcmd": boot.runcmd(inputs),
    }
    body = yaml.dump(document, Dumper=_CloudConfigDumper, sort_keys=False, width=1000)
    return "#cloud-config\n" + body
