"""``python -m logosq_os_scheduler``: the ``logosq`` command."""

from .cli import main

raise SystemExit(main())
