"""The env servlets: one Ray actor per env (host_script and the servlet_* modules run on
the hosts), the caller's handle on it (client, handle) over the direct route or SSH to
the head's gateway (transport, link, gateway_*), and their start and stop (manage)."""
