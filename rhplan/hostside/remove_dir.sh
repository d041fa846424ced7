# A fragment of delete_env.sh and fresh_env.sh, never run alone: remove_d removes the
# folder $d unless it is the home folder or one of its parents; checked on the host
# itself because only the host knows its $HOME. An installer a killed apply left behind
# may still be writing into the folder for a few seconds ("Directory not empty"): try
# again until it is done, 15 s at most. Exits 3 when refused, with rm's status when the
# last try fails; else the script goes on.
remove_d() {
  h=${HOME%/}
  if [ -n "$h" ]; then
    case "$h/" in
      "$d"/*) echo "refusing to delete $d: it holds the home folder $h" >&2; exit 3 ;;
    esac
  fi
  i=0
  until rm -rf -- "$d" 2>/dev/null && [ ! -e "$d" ]; do
    i=$((i + 1))
    if [ "$i" -ge 75 ]; then rm -rf -- "$d" || exit; break; fi
    sleep 0.2
  done
}
