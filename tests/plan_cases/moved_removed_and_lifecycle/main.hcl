cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

package "tools" {
  git_url  = "https://github.com/example/tools.git"
  revision = "v2"
  lifecycle {
    ignore_changes = [revision]
  }
}

env "train" {
  cluster = cluster.cpu
  reqs    = [package.tools]
  lifecycle {
    replace_triggered_by = [package.tools.revision]
  }
}

env "pool" {
  count   = 2
  cluster = cluster.cpu
  reqs    = ["pip:six==1.16.0"]
}

moved {
  from = env.trainer
  to   = env.train
}

moved {
  from = env.worker
  to   = env.pool
}

removed {
  from = env.old
  lifecycle {
    destroy = false
  }
}
