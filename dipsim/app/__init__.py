"""The simulated DIP's HTTP application, one module per concern: submissions, status messages,
webhook administration, replay/requeue/delivery status, the ``/_sim`` control API, middleware.
"""

from dipsim.app._core import SimCore
from dipsim.app._ids import new_transaction_id
from dipsim.app._responses import dip_timestamp

__all__ = ["SimCore", "dip_timestamp", "new_transaction_id"]
