"""The one secret scrubber: what is taken out of a text before it reaches a log, an error, an alert or Claude.

Airflow-free, so every layer uses it: source errors (engines), prompts (agents) and alerts
(notifiers, which also run Airflow's own masker for the secrets it knows).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(r"\b([A-Za-z][\w+.-]*://)[^\s/]+@")
_ASSIGNED = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|authorization)(\s*[=:]\s*)[^\s,;'\"]+")
_API_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_URI = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*")
_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[\w.\-]+[/\\])+[\w.\-]*")


def redact(text: object, secrets: Iterable[object] = (), *, for_model: bool = False) -> str:
    """``text`` without credentials: each ``user:password@`` of a URI, ``password=``/``token=``/``api_key=``
    values, API keys (``sk-...``) and each of ``secrets`` become ``***``.

    :param secrets: values known to be secret (a connection's password), masked wherever they appear.
    :param for_model: the text goes to Claude, who needs neither: whole URIs become ``<uri>`` and
        file paths ``<path>`` as well.
    """
    cleaned = _USERINFO.sub(rf"\1{MASK}@", str(text))
    cleaned = _API_KEY.sub(MASK, _ASSIGNED.sub(rf"\1\2{MASK}", cleaned))
    for secret in secrets:
        if secret:
            cleaned = cleaned.replace(str(secret), MASK)
    if for_model:
        cleaned = _PATH.sub("<path>", _URI.sub("<uri>", cleaned))
    return cleaned
