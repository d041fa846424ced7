"""The `aws` provider: EC2 instances (boto3), then set up over SSH like the ssh provider.

    provider "aws" { region = "us-east-1" }
    cluster "rh-cpu" {
      provider      = "aws"
      instance_type = "CPU:2+"            # or "m6i.large", "A10G:1", ...
      num_instances = 2                   # the first is the Ray head
      image_id      = "ami-..."
      ssh { user = "ubuntu"  private_key = "~/.ssh/id_ed25519" }
    }

What rhplan creates in the account (instances, one security group and one key pair per
cluster) is tagged with the state's lineage and the cluster's address, so a refresh is
one filtered describe for every cluster at once, and a re-apply after a crash finds
and adopts instances it launched but never recorded. Launches carry a ClientToken
derived from lineage, address and a generation number, so a retried launch cannot
create duplicates on EC2.

    provider.py    AWSProvider: the lifecycle, composed of the modules below
    plan.py        plan-time checks, values and reasons (settle, replacement)
    account.py     region/profile/endpoint, lineage, the run's shared describes
    instances.py   launch, adopt, record, retag, resize, terminate
    network.py     key pair, security group and its inbound rules
    hostkeys.py    InstanceAccess: host keys from the console output, %i, private IPs
    ec2.py         boto3 client, retries, batched calls; catalog.py types and prices;
                   console.py fingerprints in a console output; caller_address.py
Hosts are reached and set up by rhplan_ssh's SSHHosts, given InstanceAccess.
"""
from rhplan_aws.provider import AWSProvider

__all__ = ["AWSProvider"]
