cluster "cpu" {
  provider           = "local"
  create_default_env = false
  root_dir           = "/srv/rhplan/cpu"
  resources          = { CPU = 2, GPU = 0 }
}

package "tools" {
  git_url  = "https://github.com/example/tools.git"
  revision = "v1"
}

env "trainer" {
  cluster = cluster.cpu
  reqs    = [package.tools]
}

env "old" {
  cluster = cluster.cpu
  reqs    = ["pip:six==1.16.0"]
}

env "worker" {
  count   = 2
  cluster = cluster.cpu
  reqs    = ["pip:six==1.16.0"]
}
