cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

secret "hf" {
  values = { HF_TOKEN = "hf_example" }
}

env "np" {
  cluster  = cluster.cpu
  reqs     = ["pip:numpy==1.26.4", "six"]
  env_vars = { USER = "me" }
  secrets  = [secret.hf]
}

env "other" {
  cluster = cluster.cpu
  reqs    = ["pip:requests==2.32.3"]
}
