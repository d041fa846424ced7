"""Runs ON a host, inside an env: which of the given distribution names does another
installed distribution still require? (Removing `idna` from reqs must not break
`requests`, which Ray needs.) Prints a JSON list.

    still_required.py NAME...
"""
import importlib.metadata as md
import json
import re
import sys


def canon(n):
    return re.sub(r"[-_.]+", "-", n).lower()


def needed_of(names):
    asked = {canon(n) for n in names}
    needed = set()
    for d in md.distributions():
        name = canon(d.metadata["Name"] or "")
        if name in asked:
            continue
        for req in d.requires or []:
            if "extra ==" in req:
                continue
            m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
            if m and canon(m.group(1)) in asked:
                needed.add(canon(m.group(1)))
    return sorted(needed)


print(json.dumps(needed_of(sys.argv[1:])))
