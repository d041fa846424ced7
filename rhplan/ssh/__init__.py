from rhplan.ssh.connection import *  # noqa: F403 - temporary while being split
from rhplan.ssh.connection import _pool, ConnectionLost, get_connection, close_all, SSHConnection  # noqa
