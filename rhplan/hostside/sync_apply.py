# Host script (standard library only): apply one sync batch in ONE command
# (rhplan/hosts/sync.py, fast path). argv: REMOTE_DIR EXPECTED_TREE_HASH. stdin: a JSON line
# {"delete": [rel...], "files": [[rel, mode, size]...], "manifest": size}, then the
# files' bytes in that order, then the new manifest's bytes. Applied only when the
# host's manifest is the one the caller last wrote (its tree_hash): otherwise it prints
# {"stale": true} and changes nothing, and the caller syncs the slow way. The manifest
# is written last, so a batch cut short is sent again by the next sync.
import json
import os
import sys

remote, expect = sys.argv[1], sys.argv[2]
src = sys.stdin.buffer
head = json.loads(src.readline())
manifest_path = os.path.join(remote, ".rhplan-manifest.json")
try:
    with open(manifest_path, "rb") as fh:
        have = json.load(fh).get("tree_hash")
except (OSError, ValueError, AttributeError):
    have = None
if have != expect:
    print(json.dumps({"stale": True}))
    sys.exit(0)


def safe(rel):
    """A plain relative path: no '..', no absolute path, no empty part, no NUL."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def put(path, data, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.rhplan-{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


for rel in head["delete"]:
    if safe(rel):
        try:
            os.unlink(os.path.join(remote, rel))
        except FileNotFoundError:
            pass
for rel, mode, size in head["files"]:
    data = src.read(size)
    if len(data) != size:
        print(json.dumps({"error": "the batch was cut short; apply again"}))
        sys.exit(1)
    if safe(rel):
        put(os.path.join(remote, rel), data, int(mode) & 0o777)
put(manifest_path, src.read(head["manifest"]), 0o644)
print(json.dumps({"ok": True}))
