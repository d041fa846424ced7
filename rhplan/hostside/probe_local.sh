# Runs ON a host: sh -c TEXT rhplan DIR (rhplan.hosts.envs install of a local folder, without
# uv). Says whether a local folder is a Python project: "package", "plain" or "missing".
d=$1
if [ ! -d "$d" ]; then echo missing
elif [ -f "$d/pyproject.toml" ] || [ -f "$d/setup.py" ] || [ -f "$d/setup.cfg" ]; then echo package
else echo plain
fi
