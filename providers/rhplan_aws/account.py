"""The AWS account as one run of rhplan sees it: where it is (region, profile,
endpoint), the state's lineage every resource is tagged with, and the describes shared
by every cluster of the run (one for instances, one for security groups)."""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from rhplan.plugin import ProviderContext, ProviderError
from rhplan_aws import ec2


class Account:
    def __init__(self, ctx_of: Callable[[], ProviderContext | None]) -> None:
        self._ctx_of = ctx_of  # this run's context, as the provider was last given it
        self._describe_lock = threading.Lock()

    @property
    def ctx(self) -> ProviderContext | None:
        return self._ctx_of()

    def where(self, attrs: dict[str, Any], private: dict) -> tuple[str, str | None, str | None]:
        """(region, profile, endpoint) from the provider block, else as recorded (so a
        cluster removed from the configuration can still be destroyed)."""
        pcfg = (self.ctx.provider_configs.get("aws") if self.ctx else None) or {}
        region = attrs.get("region") or private.get("region") or "us-east-1"
        profile = pcfg.get("profile") if pcfg else private.get("profile")
        endpoint = pcfg.get("endpoint_url") if pcfg else private.get("endpoint_url")
        return str(region), profile, endpoint

    def client(self, attrs: dict[str, Any], private: dict) -> Any:
        region, profile, endpoint = self.where(attrs, private)
        private.update(region=region, profile=profile, endpoint_url=endpoint)
        return ec2.client(region, profile, endpoint)

    def lineage(self, private: dict) -> str:
        lineage = (self.ctx.lineage if self.ctx else "") or private.get("lineage") or ""
        if not lineage:
            raise ProviderError("no state lineage to tag instances with (internal error)")
        private["lineage"] = lineage
        return lineage

    def tags(self, attrs: dict[str, Any], lineage: str) -> dict[str, str]:
        """An instance's tags: the user's, a default Name, the lineage and the address.
        Which launch made it is its ClientToken (instances.generation_of), not a tag:
        each tag costs moto a walk of every tag of the account per instance it renders."""
        tags = dict(attrs.get("tags_all") or {})
        tags.setdefault("Name", f"rhplan-{attrs.get('name')}")
        tags.update({ec2.LINEAGE_TAG: lineage, ec2.ADDRESS_TAG: address(attrs)})
        return tags

    def owned(self, attrs: dict[str, Any], private: dict, max_age: float | None = None,
              gone_too: bool = False) -> list[dict[str, Any]]:
        """This cluster's instances that are not terminated (all of them with gone_too),
        from the one describe of the state's whole lineage (shared by every cluster in
        this run, if made at most max_age seconds ago when given)."""
        client = self.client(attrs, private)
        lineage = self.lineage(private)
        found = self._shared(("aws-instances", private["region"], private.get("endpoint_url"),
                              lineage), max_age, lambda: ec2.describe_lineage(client, lineage))
        addr = address(attrs)
        return [i for i in found if ec2.tag_dict(i).get(ec2.ADDRESS_TAG) == addr
                and (gone_too or i["State"]["Name"] not in ("terminated", "shutting-down"))]

    def groups(self, attrs: dict[str, Any], private: dict, max_age: float | None = None
               ) -> dict[str, dict[str, Any]]:
        """Every security group of the state's lineage, by id: one describe shared by every
        cluster of this run (refresh reads each cluster's rules from it, and an update
        its group's rules, if made at most max_age seconds ago when given)."""
        client = self.client(attrs, private)
        lineage = self.lineage(private)
        return self._shared(
            ("aws-groups", private["region"], private.get("endpoint_url"), lineage), max_age,
            lambda: {g["GroupId"]: g for g in ec2.call(
                client.describe_security_groups, "describing security groups",
                Filters=[{"Name": f"tag:{ec2.LINEAGE_TAG}", "Values": [lineage]}]
            )["SecurityGroups"]})

    def _shared(self, key: tuple, max_age: float | None, describe: Callable[[], Any]) -> Any:
        """This run's describe under `key` (made at most max_age seconds ago when given),
        else a fresh one, kept for the rest of the run (without a run context: not kept)."""
        ctx = self.ctx
        with self._describe_lock:
            made, found = (ctx.cache.get(key) if ctx is not None else None) or (0.0, None)
            if found is not None and max_age is not None and \
                    time.monotonic() - made > max_age:
                found = None
            if found is None:
                found = describe()
                if ctx is not None:
                    ctx.cache[key] = (time.monotonic(), found)
        return found

    def forget(self, kind: str) -> None:
        """Drop the shared describe of `kind` ("aws-instances", "aws-groups"): it no
        longer tells the truth after a launch, a termination or a rule change."""
        if self.ctx is not None:
            with self._describe_lock:
                for k in [k for k in self.ctx.cache if isinstance(k, tuple)
                          and k[:1] == (kind,)]:
                    del self.ctx.cache[k]


def address(attrs: dict[str, Any]) -> str:
    return f"cluster.{attrs.get('name')}"


def client_token(lineage: str, address: str, generation: int) -> str:
    """The launch's ClientToken: a retried launch cannot create duplicates on EC2."""
    digest = hashlib.sha256(f"{lineage}\0{address}\0{generation}".encode()).hexdigest()
    return f"rhplan-{digest[:40]}"  # EC2 allows 64 ASCII characters
