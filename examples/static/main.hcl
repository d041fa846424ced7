# Static hosts you already own, reached over SSH. The first ip is the head: it runs
# the Ray head and the envs; the others join its Ray cluster.
#
# Try it on this machine with a throwaway OpenSSH server on 127.0.0.1:
#   python examples/static/local_sshd.py --background   # writes examples/static/host.json
#   rhplan -chdir=examples/static apply   -var-file=host.json -auto-approve
#   rhplan -chdir=examples/static destroy -var-file=host.json -auto-approve
#   python examples/static/local_sshd.py --stop

variable "ips" {
  type        = list(string)
  description = "Host addresses; the first is the head."
}
variable "user" { default = "root" }
variable "port" { default = 22 }
variable "private_key" { default = "~/.ssh/id_ed25519" }
variable "known_hosts" {
  default     = null
  description = "A known_hosts file to check host keys against; without it the first key seen is trusted and recorded in the state."
}
variable "root_dir" {
  default     = null
  description = "rhplan's folder on the hosts (absolute); null means ~/.rhplan/clusters/onprem. local_sshd.py sets one per user and checkout, so two checkouts on one account never share it."
}

cluster "onprem" {
  provider = "ssh"
  ips      = var.ips
  root_dir = var.root_dir
  ssh {
    user        = var.user
    port        = var.port
    private_key = var.private_key
    known_hosts = var.known_hosts
  }
}

env "remote" {
  cluster  = cluster.onprem
  reqs     = ["pip:six==1.16.0", "../local/src/greet"] # a local folder: synced, then installed
  env_vars = { WHERE = "onprem" }
  # the code the servlet runs beside: this folder (by default the whole git repository
  # holding the configuration, here all of rhplan's checkout)
  working_dir = "."
}

output "head" {
  value = cluster.onprem.ips[0]
}
