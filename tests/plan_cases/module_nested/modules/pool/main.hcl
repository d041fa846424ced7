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
output "names" { value = [env.x[0].name, env.x[1].name, module.inner.name] }
