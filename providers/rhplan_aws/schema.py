"""The aws provider's settings: those of its cluster blocks (beside the core's) and of
its provider "aws" { ... } block. rhplan reads this file alone, without importing the
package (boto3), while decoding a configuration (rhplan/config/provider_schema.py)."""
from __future__ import annotations

from rhplan.plugin import Attr, BlockSchema

CLUSTER = (
    # whether an instance_type change replaces the cluster is the provider's call
    # (EC2 resizes in place within an architecture)
    Attr("instance_type", "string"),
    Attr("image_id", "string", force_new=True),
    Attr("region", "string", force_new=True),
    Attr("disk_size", "number", force_new=True),
    Attr("use_spot", "bool", default=False, force_new=True),
    Attr("open_ports", "list(number)", default=[]),
    Attr("allowed_cidrs", "list(string)", optional_computed=True,
         doc="aws: who may reach SSH and open_ports, e.g. [\"203.0.113.7/32\"] (default: "
             "this machine's public address, looked up while planning)"),
    Attr("tags", "map(string)", default={}, doc="tags on the cluster's cloud resources"),
    # what instance_type resolved to, what it costs, what was launched
    Attr("resolved_instance_type", "string", computed=True),
    Attr("cost_per_hour", "number", computed=True,
         doc="estimated on-demand USD per hour for all its instances"),
    Attr("instance_ids", "list(string)", computed=True),
    Attr("tags_all", "map(string)", computed=True, doc="default_tags merged with tags"),
    # the security group's inbound rules (planned from allowed_cidrs and open_ports,
    # read back on refresh, so a rule changed outside rhplan shows as drift)
    Attr("ingress", "list(string)", computed=True),
    Attr("host_keys", "string", computed=True,
         doc="how new hosts' SSH host keys are checked"),
)

# its hosts are set up by rhplan_ssh: its clusters take the ssh provider's settings (the
# ssh block's login settings) too
INCLUDES = ("ssh",)

CLUSTER_BLOCKS = {
    "ssh": BlockSchema({"host_key_check": Attr(
        "host_key_check", "string",
        doc='aws: how a new instance\'s host key is checked before the first login: '
            '"console_output" (default: against the fingerprints cloud-init prints to '
            'the console) or "trust_on_first_use"')}),
}

PROVIDER = (
    Attr("region", "string", doc="default region of its clusters (else AWS_REGION or "
                                 "the profile's, else us-east-1)"),
    Attr("profile", "string", doc="a profile in ~/.aws/config (credentials stay there)"),
    Attr("endpoint_url", "string", doc="an AWS-compatible endpoint, e.g. a local emulator"),
    Attr("default_tags", "map(string)", default={}, doc="tags on everything rhplan creates"),
    Attr("public_ip_url", "string",
         doc="where a cluster without allowed_cidrs looks up this machine's public "
             "address (default https://checkip.amazonaws.com; \"\" for no lookup)"),
)
