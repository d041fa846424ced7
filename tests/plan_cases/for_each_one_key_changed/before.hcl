cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

env "team" {
  for_each = { alice = "pip:six==1.16.0", bob = "pip:idna==3.7" }
  cluster  = cluster.cpu
  reqs     = [each.value]
  env_vars = { OWNER = each.key }
}

env "worker" {
  count    = 3
  cluster  = cluster.cpu
  env_vars = { INDEX = "${count.index}", LEAD = env.team["alice"].name }
}
