# module count / for_each: instances module.team["cv"], module.spare[0], each.* bound
variable "teams" {
  default = { nlp = 1, cv = 2 }
}

cluster "c" {
  provider           = "local"
  root_dir           = "/srv/rhplan/c"
  resources          = { CPU = 2, GPU = 0 }
  create_default_env = false
}

module "team" {
  for_each = var.teams
  source   = "./modules/team"
  cluster  = cluster.c
  team     = each.key
  size     = each.value
}

module "spare" {
  count   = 1
  source  = "./modules/team"
  cluster = cluster.c
  team    = "spare-${count.index}"
}

env "x" {
  cluster  = cluster.c
  reqs     = []
  env_vars = { NLP = module.team["nlp"].first, SPARE = module.spare[0].first }
}

output "teams" { value = keys(module.team) } # module.team is a map of its instances
