variable "cluster" {}

env "x" {
  cluster = var.cluster
  reqs    = []
}

output "name" { value = env.x.name }
