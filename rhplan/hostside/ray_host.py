"""Runs ON a host, in any Python 3 with the standard library only: the private folder
each of rhplan's Ray nodes works in there, and which processes belong to that node.

rhplan is not installed on hosts. ray_head.py runs this file's text as
`python -I -c <text>` followed by `main()` (COMMAND ARGS below; rhplan.hostside), and
the other host scripts that need its functions (hostside/facts.py,
servlets/manage.py, servlets/status_probe.py) run after its text (OWNED_PIDS_FN), so
"the processes of this node" has one definition.

Layout. Every Ray node works in its own folder, named at random, under a folder of
the user that runs it:

    /tmp/rhplan-<uid>/           0700, this user's, a real folder (never a symlink)
        <key>-<random>/          0700: Ray's --temp-dir (sockets, logs, spilled objects)

<key> is 8 hex digits naming the node (sha256 of the cluster's root dir, or of
root@host for a worker), so a new start finds its node's leftovers; the random part
makes the path unguessable, and the parent keeps other users out whatever Ray does
to the modes inside (Ray chmods its folders 0777 when a node or worker starts; `seal`
takes that back after `ray start`; files are 0600 through umask 077). Older rhplan
used /tmp/rhplan-ray-<sha256[:12]> (LEGACY), made by Ray itself: those are still
stopped and removed when they are this user's.

    make KEY [OLD_DIR...]         remove OLD_DIRs (checked), make a new folder for KEY
    leftovers KEY LEGACY TOKEN    folders of KEY (and LEGACY) and the processes in them
    fresh KEY LEGACY TOKEN PORTS  a node's start in one round trip: stop the leftovers'
                                  processes, remove their folders, make a new one; and
                                  PORTS free ports, HOME, PATH and this Python's Ray version
    status TEMP PORT TOKEN HOST   the node's pids, whether its head answers, and what is
                                  wrong with its folder ("problem"), if anything
    seal TEMP                     no group/other access to anything under TEMP
    remove TEMP                   remove TEMP (checked first); nothing if it is gone
    kill PID...                   SIGTERM, then SIGKILL; {"left": the pids still alive}

Every command prints one JSON line; a refusal is {"error": ONE LINE} and exit 1.
"""
import json
import os
import re
import shutil
import stat
import sys
import tempfile

TMP = "/tmp"
LEGACY = re.compile(r"/tmp/rhplan-ray-[0-9a-f]{12}")
# Ray puts session_<date>_<time>_<usec>_<pid>/sockets/plasma_store (up to 64 bytes)
# after its temp dir, and a Unix socket path must fit in 107 bytes
SOCKET_TAIL = 64
SOCKET_MAX = 107


class Unsafe(Exception):
    """A folder rhplan's Ray would use is not private to this user."""


def user_parent():
    return f"{TMP}/rhplan-{os.geteuid()}"


def _private_dir(path, what, mode_ok=True):
    """Raise Unsafe unless path (lstat: a symlink is refused) is a folder of this user
    that no one else can enter; mode_ok=False skips the mode (Ray's own 0777 folders)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise Unsafe(f"{what} {path} cannot be checked ({exc.strerror})") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise Unsafe(f"{what} {path} is {kind}; someone else may have made it: remove it "
                     "after checking what it is, then run rhplan again")
    if st.st_uid != os.geteuid():
        raise Unsafe(f"{what} {path} belongs to uid {st.st_uid}, not to uid {os.geteuid()} "
                     "that runs rhplan's Ray; someone else may have made it: remove it "
                     "after checking what it is, then run rhplan again")
    if mode_ok and stat.S_IMODE(st.st_mode) & 0o077:
        raise Unsafe(f"{what} {path} has mode {stat.S_IMODE(st.st_mode):o}, not 700: other "
                     "users may have put files in it: remove it after checking what it is, "
                     "then run rhplan again")


def ensure_parent():
    """This user's folder for Ray nodes, made 0700 if missing, else checked."""
    parent = user_parent()
    try:
        os.mkdir(parent, 0o700)
    except FileExistsError:
        pass
    _private_dir(parent, "rhplan's folder for Ray")
    return parent


def temp_dir_problem(temp_dir):
    """Why temp_dir may not be used as a node's Ray folder, or None (also when it is
    gone: nothing runs there). The parent must be this user's, 0700, a real folder; the
    temp dir this user's and a real folder. Its own mode is not held against it: Ray
    chmods its folders 0777 whenever a node or a worker starts (ray/_private/node.py,
    _init_temp), and the parent is what keeps other users out."""
    try:
        if LEGACY.fullmatch(temp_dir):
            # made by Ray itself (0777) by an older rhplan: ours, and a real folder
            _private_dir(temp_dir, "Ray's old temp dir", mode_ok=False)
            return None
        parent = os.path.dirname(temp_dir)
        if parent != user_parent() or not re.fullmatch(r"[0-9a-f]{8}-[A-Za-z0-9_]+",
                                                       os.path.basename(temp_dir)):
            return (f"{temp_dir} is not a Ray temp dir rhplan makes for uid {os.geteuid()} "
                    f"(those are under {user_parent()}/)")
        _private_dir(parent, "rhplan's folder for Ray")
        _private_dir(temp_dir, "Ray's temp dir", mode_ok=False)
    except FileNotFoundError:
        return None
    except Unsafe as exc:
        return str(exc)
    return None


def _key_dirs(key):
    """The folders made for KEY under this user's folder (a new start's leftovers)."""
    parent = user_parent()
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    return sorted(f"{parent}/{n}" for n in names if n.startswith(key + "-"))


def make(key, old):
    for path in old:
        remove(path)
    parent = ensure_parent()
    temp_dir = tempfile.mkdtemp(prefix=key + "-", dir=parent)  # 0700, unguessable
    if len(temp_dir) + SOCKET_TAIL > SOCKET_MAX:
        os.rmdir(temp_dir)
        raise Unsafe(f"Ray's temp dir {temp_dir} is too long for Ray's socket paths "
                     f"({len(temp_dir)} bytes, at most {SOCKET_MAX - SOCKET_TAIL})")
    return temp_dir


def remove(temp_dir):
    problem = temp_dir_problem(temp_dir)
    if problem:
        raise Unsafe(f"not removed: {problem}")
    # rmtree works through folder fds here: a symlink swapped in is removed, not followed
    shutil.rmtree(temp_dir, ignore_errors=True)
    if os.path.lexists(temp_dir):
        raise Unsafe(f"could not remove {temp_dir}")


def seal(temp_dir):
    """Take back the 0777 Ray gives its folders (files are 0600 by umask 077 already):
    walked through fds, symlinks never followed."""
    problem = temp_dir_problem(temp_dir)
    if problem:
        raise Unsafe(problem)
    if not os.path.isdir(temp_dir):
        return
    os.chmod(temp_dir, 0o700)
    for _, _, files, dfd in os.fwalk(temp_dir, follow_symlinks=False):
        os.fchmod(dfd, 0o700)
        for name in files:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                try:
                    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                except OSError:
                    continue
                try:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
                finally:
                    os.close(fd)


def _proc_uid(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _my_processes(with_stat=False):
    """(pid, argv, stat fields after the name) of every process this user runs: the one
    ownership check of a process, made again after reading it (the pid may have been
    reused meanwhile). Without with_stat, fields is None."""
    me = os.geteuid()
    for p in os.listdir("/proc"):
        if not p.isdigit() or _proc_uid(p) != me:
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            fields = None
            if with_stat:
                with open(f"/proc/{p}/stat", "rb") as f:
                    st = f.read()
                fields = st[st.rfind(b")") + 2:].split()
        except OSError:
            continue
        if _proc_uid(p) != me:  # the pid was reused while we read it
            continue
        yield p, argv, fields


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            s = f.read()
        return s[s.rfind(b")") + 2:].split()[0] != b"Z"
    except OSError:
        return False


def kill(pids, wait=5.0):
    """SIGTERM, then SIGKILL what is left (some Ray daemons ignore SIGTERM), waiting
    with a bound each time; the pids still alive."""
    import signal
    import time
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.05)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    return pids


def leftovers(key, legacy, token):
    """Folders of KEY (and LEGACY) and the processes of this user in them. An old-style
    folder counts only when it is this user's: one someone else made is never used,
    nor removed, nor a reason to refuse."""
    dirs = _key_dirs(key) + ([legacy] if os.path.lexists(legacy)
                             and not temp_dir_problem(legacy) else [])
    pids = set(owned_pids("", token)) if token else set()
    for d in dirs:
        pids.update(owned_pids(d, ""))
    return dirs, sorted(pids)


def fresh(key, legacy, token, ports):
    """Everything a node's start needs from its host, in one command: what an earlier
    start left is stopped and removed, a new private folder made; free ports on
    127.0.0.1 (held open together, so distinct), HOME and PATH for Ray's clean
    environment, and the Ray version of this Python (from its metadata: importing Ray
    takes ~1 s)."""
    import socket
    from importlib.metadata import PackageNotFoundError, version
    dirs, pids = leftovers(key, legacy, token)
    left = kill(pids) if pids else []
    if left:
        raise Unsafe(f"could not stop Ray processes {left} left by an earlier start")
    temp_dir = make(key, dirs)
    socks = []
    for _ in range(int(ports)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    try:
        ray_version = version("ray")
    except PackageNotFoundError:
        ray_version = None
    return {"temp_dir": temp_dir, "ports": [s.getsockname()[1] for s in socks],
            "home": os.path.expanduser("~"),
            "path": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "ray_version": ray_version}


def _names(arg, temp_dir):
    """arg names temp_dir itself or a path under it (not /tmp/x-1 for /tmp/x)."""
    start = arg.find(temp_dir)
    while start >= 0:
        end = start + len(temp_dir)
        if end == len(arg) or arg[end:end + 1] == b"/":
            return True
        start = arg.find(temp_dir, start + 1)
    return False


def owned_pids(temp_dir, token_path):
    """This node's processes: run by this user (a root destroy never signals another
    user's process, whatever its command line says) and either naming the node's temp
    dir in an argument, or started by Raylet with this cluster's token (agents and
    workers rename themselves ray::..., and outlive a raylet killed by hand), or
    descending from one that is. Drivers, such as a user's notebook, have no
    RAY_RAYLET_PID and are never matched."""
    token = b"RAY_AUTH_TOKEN_PATH=" + token_path.encode()
    temp_dir = temp_dir.encode()
    parents, owned = {}, set()
    for p, argv, fields in _my_processes(with_stat=True):
        if fields[0] == b"Z":
            continue
        parents[int(p)] = int(fields[1])
        if temp_dir and any(_names(a, temp_dir) for a in argv):
            owned.add(int(p))
            continue
        if not token_path:
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if token in env and any(e.startswith(b"RAY_RAYLET_PID=") for e in env):
            owned.add(int(p))
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in owned and pid not in owned:
                owned.add(pid)
                changed = True
    return sorted(owned)


def raylet_up(temp_dir):
    """A raylet of this user runs in temp_dir. A head whose raylet is gone answers on
    its GCS port, yet no driver can connect: it counts as down."""
    marker = temp_dir.encode() + b"/"
    return any(argv[0].endswith(b"/raylet") and any(marker in a for a in argv[1:])
               for _, argv, _ in _my_processes())


def gcs_up(host, port):
    import socket
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "make":
            out = {"temp_dir": make(args[0], args[1:])}
        elif cmd == "leftovers":
            dirs, pids = leftovers(*args)
            out = {"dirs": dirs, "pids": pids}
        elif cmd == "fresh":
            out = fresh(*args)
        elif cmd == "status":
            temp_dir, port, token, host = args
            out = {"pids": owned_pids(temp_dir, token), "problem": temp_dir_problem(temp_dir),
                   "gcs_up": int(port) > 0 and gcs_up(host, port) and raylet_up(temp_dir)}
        elif cmd == "seal":
            seal(args[0])
            out = {"sealed": args[0]}
        elif cmd == "remove":
            remove(args[0])
            out = {"removed": args[0]}
        elif cmd == "kill":
            out = {"left": kill([int(p) for p in args])}
        else:
            raise Unsafe(f"unknown command {cmd!r}")
    except Unsafe as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


# run as a file (`python ray_host.py status ...`); not when its text leads another script
if __name__ == "__main__" and os.path.basename(globals().get("__file__") or "") == "ray_host.py":
    sys.exit(main())
