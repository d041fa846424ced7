"""Call a function inside the example's env on EC2, through its servlet (after rhplan apply).

    python examples/aws/np_sum.py
"""
from pathlib import Path

import rhplan


def np_sum(a, b):
    import numpy as np  # imported in the env's interpreter on the head, not here

    # int(): the result comes back to this Python, which may not have numpy
    return int(np.sum([a, b]))


if __name__ == "__main__":
    s = rhplan.servlet("np_env", chdir=Path(__file__).parent)
    print("np_sum(2, 3) =", s.call(np_sum, 2, 3))
    print("servlet      =", {k: v for k, v in s.status().items() if k in ("env", "pid", "python")})
