# Runs ON a host: sh -c TEXT rhplan DIR UV VENV_ARGS... (rhplan.hosts.envs.make_env), after
# remove_dir.sh. A new env at $1 in one command (one SSH round trip where there were
# three: the uv to use, the delete, the venv): whatever an interrupted create left there
# is removed as remove_d removes it (never the home folder or a parent of it), then $2,
# the uv, makes the venv with the arguments after it. Exit 98, having touched nothing,
# when $2 is not an executable there.
d=$1 uv=$2
shift 2
[ -f "$uv" ] && [ -x "$uv" ] || exit 98
remove_d
exec "$uv" venv "$@" "$d"
