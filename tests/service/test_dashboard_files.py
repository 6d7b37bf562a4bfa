"""The dashboard ships as package data and needs nothing but the server that serves it.

No build step and no network: the page is three plain files in the wheel, and it loads
nothing from anywhere but its own server (a user's server may be offline, and nothing here
reaches the internet). What it shows is checked in a real browser in test_dashboard.py.
"""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

STATIC = files("logosq_os_scheduler").joinpath("service", "static")
PAGE_FILES = ("index.html", "dashboard.js", "dashboard.css")


@pytest.mark.parametrize("name", PAGE_FILES)
def test_each_file_of_the_page_is_package_data(name: str) -> None:
    assert STATIC.joinpath(name).read_text(encoding="utf-8").strip()


def test_the_page_loads_its_script_and_style_from_its_own_server() -> None:
    html = STATIC.joinpath("index.html").read_text(encoding="utf-8")
    assert '<script type="module" src="/static/dashboard.js">' in html
    assert '<link rel="stylesheet" href="/static/dashboard.css">' in html


@pytest.mark.parametrize("name", PAGE_FILES)
def test_nothing_is_loaded_from_another_host(name: str) -> None:
    text = STATIC.joinpath(name).read_text(encoding="utf-8")
    # The SVG namespace is a name, not a request; any other absolute URL would be a fetch.
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    assert "@import" not in text
    assert not re.search(r"\bimport\s*\(", text)  # no dynamic imports


def test_the_script_reads_only_the_public_api() -> None:
    script = STATIC.joinpath("dashboard.js").read_text(encoding="utf-8")
    paths = set(re.findall(r"[\"`](/[\w/.-]*)", script))
    assert paths <= {"/v1/me", "/v1/stats", "/v1/backends", "/v1/tasks", "/v1/events"}, paths


def test_server_text_is_never_parsed_as_html() -> None:
    # Task names, keys and user names come from users: the script sets them as text only.
    script = STATIC.joinpath("dashboard.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in script
