# Runs ON a host: sh -c TEXT sh GO_FILE (rhplan.ray.servlets.manage.PendingStart.cancel).
# Tells a pending servlet start to leave ($1: its go file, ROOT/ray/rhplan/servlet-go-*),
# unless ROOT/ray is gone (then it leaves by itself).
d=$(dirname -- "$1")
[ -d "$(dirname -- "$d")" ] || exit 0
mkdir -p -- "$d" && echo cancel >"$1"
