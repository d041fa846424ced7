variable "cluster" {}
variable "team" { type = string }
variable "size" { default = 1 }

env "w" {
  count    = var.size
  cluster  = var.cluster
  reqs     = []
  env_vars = { TEAM = var.team }
}

output "first" { value = env.w[0].name }
