# Runs ON a host: sh -c TEXT rhplan DIR VENV_COMMAND... (rhplan.hosts.envs.create_venv).
# Makes the env at $1 with the command after it ("$@" DIR), in one command: an env
# already there is replaced (--clear), an empty folder filled, anything else refused
# (exit 97), so a typo in a path cannot wipe someone's files.
d=$1
shift
if [ -f "$d/pyvenv.cfg" ]; then exec "$@" --clear "$d"
elif [ -d "$d" ] && [ -z "$(ls -A -- "$d")" ]; then exec "$@" "$d"
elif [ -e "$d" ] || [ -L "$d" ]; then echo "rhplan: busy" >&2; exit 97
else exec "$@" "$d"
fi
