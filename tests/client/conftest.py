"""The client's tests run against the same real ``logosq serve`` processes as the service's
own tests: the ``make_server`` fixture of ``tests/service/conftest.py`` (one definition,
imported here rather than copied), and a TCP proxy that loses responses on purpose."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SERVICE_TESTS = Path(__file__).resolve().parent.parent / "service"

if (SERVICE_TESTS / "conftest.py").exists():
    # The service's helpers import each other by module name, as in their own directory.
    if str(SERVICE_TESTS) not in sys.path:
        sys.path.insert(0, str(SERVICE_TESTS))
    _spec = importlib.util.spec_from_file_location(
        "_service_conftest", SERVICE_TESTS / "conftest.py"
    )
    assert _spec is not None and _spec.loader is not None
    _service_conftest = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_service_conftest)
    make_server = _service_conftest.make_server
