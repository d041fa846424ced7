cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

env "team" {
  for_each = { alice = "pip:six==1.16.0", carol = "pip:requests==2.32.3" }
  cluster  = cluster.cpu
  reqs     = [each.value]
  env_vars = { OWNER = each.key }
}

env "worker" {
  count    = 2
  cluster  = cluster.cpu
  env_vars = { INDEX = "${count.index}", LEAD = env.team["alice"].name }
}
