"""What a job gets when nothing sets an option: the one home of these values.

The client's ``DEFAULTS``, :class:`~disquette.job.Job`'s field defaults, the stores that
leave default values out of what they keep (Redis hashes, disque:// envelopes), the
Disque-protocol server's jobs and the CLI's help all read them from here; so do the Redis
scripts, whose ``@NAME@`` placeholders (``DEFAULTS`` in ``common.lua``) are filled with
these values when they are loaded.

Changing one changes how jobs already kept are read: a Redis hash or a disque:// body that
left a value out because it was the default then reads as the new default.
"""

from __future__ import annotations

from typing import Final

#: Lower runs first.
PRIORITY: Final = 100
#: Seconds a delivered job may run before it is delivered again.
RETRY_AFTER: Final = 300.0
#: Deliveries that end in an error before the job is failed for good.
MAX_ATTEMPTS: Final = 25
#: Seconds an acked job's result stays for ``wait``.
RESULT_TTL: Final = 3600.0
