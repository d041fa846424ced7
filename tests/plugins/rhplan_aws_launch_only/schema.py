"""aws_launch_only declares no settings of its own: it runs beside the aws provider
(which it extends), whose cluster settings (INCLUDES) and provider "aws" { } block
configure it."""
from __future__ import annotations

CLUSTER = ()
INCLUDES = ("aws",)
