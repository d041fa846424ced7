variable "cluster" {}
variable "size" {
  type    = number
  default = 1
}

env "x" {
  count    = var.size
  cluster  = var.cluster
  reqs     = ["pip:six"]
  env_vars = { I = "${count.index}" }
}

module "inner" {
  source  = "../inner"
  cluster = var.cluster
}

output "first" { value = env.x[0].name }
output "names" { value = concat(env.x[*].name, [module.inner.name]) }
