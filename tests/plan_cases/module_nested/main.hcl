cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

module "pool" {
  source  = "./modules/pool"
  cluster = cluster.cpu
  size    = 2
}

env "lead" {
  cluster  = cluster.cpu
  reqs     = []
  env_vars = { FIRST = module.pool.first }
}

output "pool" { value = module.pool.names }
