"""A tiny package installed into the example env from a local folder."""
import os


def hello(name: str = "world") -> str:
    return f"{os.environ.get('GREETING', 'hello')}, {name}"
