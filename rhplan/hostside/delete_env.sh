# Runs ON a host: sh -c TEXT rhplan DIR (rhplan.hosts.envs.delete_env), after remove_dir.sh.
# Deletes $1 as remove_d does (never the home folder or a parent of it).
d=$1
remove_d
