"""Server fixtures for every backend, each started once per session on a free 127.0.0.1 port."""

from .servers_azure import *  # noqa: F403
from .servers_faults import *  # noqa: F403
from .servers_gcs import *  # noqa: F403
from .servers_redis import *  # noqa: F403
from .servers_s3 import *  # noqa: F403
