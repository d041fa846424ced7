# A local cluster (this machine) with one env: small PyPI packages, a local
# package folder shipped beside this file, env vars and a secret. apply starts a
# Ray head for the cluster and a servlet for the env (see np_sum.py).
rhplan {
  backend "local" { path = "rhplan.state.json" }
}

variable "greeting" {
  default     = "hello"
  description = "Passed to the env as GREETING."
}

locals {
  team = "ml-platform"
}

cluster "laptop" {
  provider = "local"
}

secret "api" {
  # read from the environment when you plan and apply; only a hash is stored
  values = { API_TOKEN = env("RHPLAN_EXAMPLE_TOKEN", "dev-token") }
}

env "np_env" {
  cluster = cluster.laptop
  # the code the servlet runs beside: this folder (left out, working_dir defaults to the
  # whole git repository holding the configuration, here all of rhplan's checkout)
  working_dir = "."
  reqs        = ["pip:numpy==2.2.6", "idna==3.7", "./src/greet"]
  env_vars = {
    GREETING = var.greeting
    TEAM     = upper(local.team)
  }
  secrets = [secret.api]
}

output "python" {
  value = env.np_env.python
}

output "env_path" {
  value = env.np_env.path
}
