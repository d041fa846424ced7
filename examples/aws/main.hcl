# Two EC2 instances forming one Ray cluster (the first is the head), with one env.
# rhplan launches them, makes a key pair from private_key's .pub and a security group
# (SSH and open_ports from allowed_cidrs only, and all traffic between the cluster's own
# instances), checks each new instance's host key against its console output, then sets
# the hosts up over SSH. See README.md for real AWS and for a dry run against moto
# (local_moto.py writes moto.json, a -var-file with the settings below for it).
#
#   rhplan -chdir=examples/aws plan  -var image_id=ami-...
#   rhplan -chdir=examples/aws apply -var image_id=ami-...
#   python examples/aws/np_sum.py
#   rhplan -chdir=examples/aws destroy -var image_id=ami-...

variable "region" {
  default     = "us-east-1"
  description = "AWS region to launch the instances in."
}

variable "endpoint_url" {
  default     = null
  description = "An AWS-compatible endpoint, e.g. http://127.0.0.1:5000 for moto; null means real AWS."
}

variable "image_id" {
  type        = string
  description = "An x86_64 AMI in that region with python3 3.9+ and sshd, e.g. Ubuntu 22.04 (AMI ids differ per region)."
}

variable "ssh_user" {
  default     = "ubuntu"
  description = "The image's login user (ubuntu on Ubuntu AMIs, ec2-user on Amazon Linux)."
}

variable "private_key" {
  default     = "~/.ssh/id_ed25519"
  description = "SSH private key; the instances' key pair is imported from its .pub beside it."
}

variable "allowed_cidrs" {
  default     = null
  description = "Who may reach SSH and open_ports, e.g. [\"203.0.113.7/32\"]; null means this machine's public address (looked up at https://checkip.amazonaws.com while planning)."
}

variable "host_key_check" {
  default     = "console_output"
  description = "How a new instance's SSH host key is checked: \"console_output\" (against the fingerprints cloud-init prints to its console) or \"trust_on_first_use\"."
}

variable "proxy_command" {
  default     = null
  description = "How to reach an instance (%h its address, %i its id), e.g. through SSM; null means SSH to its address."
}

variable "python" {
  default     = "python3"
  description = "The instances' Python 3.9+; a driver (np_sum.py) must run the same version."
}

variable "root_dir" {
  default     = null
  description = "rhplan's folder on the instances (absolute); null means ~/.rhplan/clusters/rh-cpu."
}

provider "aws" {
  region       = var.region
  endpoint_url = var.endpoint_url
}

cluster "rh-cpu" {
  provider      = "aws"
  instance_type = "CPU:2+" # the cheapest x86_64 type with at least 2 vCPUs
  num_instances = 2
  image_id      = var.image_id
  open_ports    = [8080]
  autostop_mins = 60 # the head shuts down (EC2 stops it) after an idle hour
  python        = var.python
  root_dir      = var.root_dir
  allowed_cidrs = var.allowed_cidrs
  ssh {
    user           = var.ssh_user
    private_key    = var.private_key
    proxy_command  = var.proxy_command
    host_key_check = var.host_key_check
  }
}

env "np_env" {
  cluster = cluster.rh-cpu
  # the code the servlet runs beside: this folder (left out, working_dir defaults to the
  # whole git repository holding the configuration, here all of rhplan's checkout)
  working_dir = "."
  reqs        = ["pip:numpy==2.2.6"]
}

output "head_ip" {
  value = cluster.rh-cpu.ips[0]
}
