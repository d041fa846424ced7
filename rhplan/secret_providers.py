"""Provider secrets: `secret "aws" { provider = "aws" profile = "..." }` and its kin.

A provider secret reads credentials on this machine (where rhplan runs) and puts them on
the env's hosts as a 0600 file, with the env var that tools read pointed at it:

    aws          AWS_SHARED_CREDENTIALS_FILE (only that profile's section) + AWS_PROFILE
    huggingface  HF_TOKEN (the token) + HF_TOKEN_PATH (a file holding it)
    gcp          GOOGLE_APPLICATION_CREDENTIALS (the service-account JSON file)
    ssh          GIT_SSH_COMMAND ("ssh -i KEY -o IdentitiesOnly=yes", for git over SSH)

They travel as ordinary secret values (kept in memory, digested in the state, never
shown), where a file is a value under a key no env var can have:
"@file:VAR:NAME" (VAR is set to the file's path on the host) or "@ssh-key:VAR:NAME" (VAR
is set to an ssh command using it). place() turns those into files on the host.
"""
from __future__ import annotations

import configparser
import json
import os
import posixpath
import shlex
from collections.abc import Mapping
from pathlib import Path

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection

PROVIDERS = ("aws", "huggingface", "gcp", "ssh")
FILES_DIR = "rhplan/secret_files"  # in the env dir, one 0600 file per provider secret
_MARKS = ("@file:", "@ssh-key:")
_AWS_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SSH_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


class MissingCredentials(Exception):
    """The local credentials a provider secret reads are not there (the message names
    the file it looked for and what to do)."""


def read_local(provider: str, profile: str | None = None, path: str | None = None,
               environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret values of a provider secret, read from this machine's files."""
    env = os.environ if environ is None else environ
    if provider == "aws":
        return _aws(profile or env.get("AWS_PROFILE") or "default", path, env)
    if provider == "huggingface":
        return _huggingface(path, env)
    if provider == "gcp":
        return _gcp(path, env)
    if provider == "ssh":
        return _ssh(path, env)
    raise ValueError(f"unknown secret provider {provider!r}; use one of {', '.join(PROVIDERS)}")


def shown_keys(values: Mapping[str, str]) -> list[str]:
    """The env var names a secret's values set on the hosts (what plan and state show)."""
    return sorted({k.split(":", 2)[1] if k.startswith(_MARKS) else k for k in values})


def is_file_key(key: str) -> bool:
    return key.startswith(_MARKS)


def _expand(path: str, env: Mapping[str, str]) -> Path:
    if path.startswith("~") and env.get("HOME"):
        path = env["HOME"] + path[1:]
    return Path(os.path.expanduser(path))


def _read(path: Path, what: str, fix: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingCredentials(f"no {what} at {path}; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingCredentials(f"cannot read {what} at {path} ({type(exc).__name__}); "
                                 f"{fix}") from None


def _aws(profile: str, path: str | None, env: Mapping[str, str]) -> dict[str, str]:
    where = _expand(path or env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials", env)
    fix = ("run `aws configure` (or set AWS_SHARED_CREDENTIALS_FILE, or the secret's path)")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(_read(where, "AWS credentials file", fix), source=str(where))
    except configparser.Error as exc:
        raise MissingCredentials(f"cannot parse AWS credentials file {where} "
                                 f"({type(exc).__name__}); fix it or run `aws configure`") from None
    if not parser.has_section(profile) or not parser.has_option(profile, "aws_access_key_id"):
        raise MissingCredentials(f"no profile [{profile}] with aws_access_key_id in AWS "
                                 f"credentials file {where}; run `aws configure --profile "
                                 f"{profile}` or set the secret's profile")
    # only this profile travels: the others stay on this machine
    lines = [f"[{profile}]"] + [f"{k} = {parser.get(profile, k)}" for k in _AWS_KEYS
                                if parser.has_option(profile, k)]
    return {"@file:AWS_SHARED_CREDENTIALS_FILE:aws_credentials": "\n".join(lines) + "\n",
            "AWS_PROFILE": profile}


def _huggingface(path: str | None, env: Mapping[str, str]) -> dict[str, str]:
    token = None if path else env.get("HF_TOKEN")
    if not token:
        default = (env.get("HF_TOKEN_PATH") or (
            f"{env['HF_HOME']}/token" if env.get("HF_HOME") else "~/.cache/huggingface/token"))
        token = _read(_expand(path or default, env), "Hugging Face token file",
                      "run `huggingface-cli login` or export HF_TOKEN").strip()
        if not token:
            raise MissingCredentials(f"the Hugging Face token file {_expand(path or default, env)} "
                                     "is empty; run `huggingface-cli login` or export HF_TOKEN")
    return {"@file:HF_TOKEN_PATH:hf_token": token, "HF_TOKEN": token}


def _gcp(path: str | None, env: Mapping[str, str]) -> dict[str, str]:
    where = _expand(path or env.get("GOOGLE_APPLICATION_CREDENTIALS")
                    or "~/.config/gcloud/application_default_credentials.json", env)
    fix = ("set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file "
           "(or the secret's path)")
    text = _read(where, "Google credentials file", fix)
    try:
        kind = json.loads(text).get("type")
    except (ValueError, AttributeError):
        kind = None
    if not kind:
        raise MissingCredentials(f"{where} is not a Google credentials JSON file (no \"type\"); "
                                 f"{fix}")
    return {"@file:GOOGLE_APPLICATION_CREDENTIALS:gcp_credentials.json": text}


def _ssh(path: str | None, env: Mapping[str, str]) -> dict[str, str]:
    tried = [path] if path else list(_SSH_KEYS)
    for candidate in tried:
        where = _expand(candidate, env)
        if where.exists() or path:
            text = _read(where, "SSH private key", "make one with ssh-keygen or set the "
                         "secret's path")
            if "PRIVATE KEY" not in text:
                raise MissingCredentials(f"{where} is not an SSH private key (no PRIVATE KEY "
                                         "block); set the secret's path to one")
            return {"@ssh-key:GIT_SSH_COMMAND:git_ssh_key": text}
    looked = ", ".join(str(_expand(p, env)) for p in tried)
    raise MissingCredentials(f"no SSH private key at {looked}; make one with ssh-keygen or "
                             "set the secret's path")


def place(conn: Connection, env_dir: str, secrets: Mapping[str, str]) -> dict[str, str]:
    """Write the provider secrets' files to ENV/rhplan/secret_files (0600; the folder
    is emptied first, so a secret the env no longer lists leaves nothing behind) and
    return the secrets as env vars: file keys replaced by the variables pointing at them."""
    folder = posixpath.join(env_dir, FILES_DIR)
    res = conn.run(["rm", "-rf", "--", folder], timeout=60)
    if not res.ok:
        raise ProviderError(f"clearing {folder} on {conn.host} failed: "
                            f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")
    out: dict[str, str] = {}
    for key, value in secrets.items():
        if not is_file_key(key):
            out[key] = value
            continue
        kind, var, name = key[1:].split(":", 2)
        path = posixpath.join(folder, name)
        try:
            conn.put_bytes(value.encode("utf-8"), path, 0o600)
        except OSError as exc:  # the OS message names the path, never the content
            raise ProviderError(f"writing {path} on {conn.host} failed: {exc}") from None
        out[var] = path if kind == "file" else (
            f"ssh -i {shlex.quote(path)} -o IdentitiesOnly=yes")
    return out
