"""The worker runtime (a package from here on; this commit only moves the module)."""

from .engine import *  # noqa: F403
from .engine import (
    DEFAULT_QUEUE as DEFAULT_QUEUE,
)
from .engine import (
    ENV_CONCURRENCY as ENV_CONCURRENCY,
)
from .engine import (
    ENV_QUEUES as ENV_QUEUES,
)
from .engine import (
    ENV_SUPERVISOR_PID as ENV_SUPERVISOR_PID,
)
from .engine import __all__ as __all__
from .engine import (
    worker_command as worker_command,
)
