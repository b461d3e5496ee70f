"""Running an entry point: user errors become one message and exit status 2, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from simclr.errors import SimCLRError
from simclr.runs import log


def run_or_explain(job: Callable[[], Any]) -> Any:
    try:
        return job()
    except SimCLRError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
