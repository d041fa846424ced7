"""Ray on a cluster: the head and its nodes (head.py), the env servlets, their gateway
and watchdog (servlets/). Everything that starts, reaches or stops a Ray process."""
