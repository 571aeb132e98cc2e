"""HTTP sources: JSON records from an API, page after page, with bounded retries.

Pages come through one ``requests.Session``. The records of each page are spooled as JSON lines
to a temporary file, which is then staged like a JSON-lines file: DuckDB sniffs the types over
every record (a field that only appears on page 40 is not lost, nested objects stay structs) and
streams chunks to the staged dataset, so memory holds one page at a time.

The URL is the connection's base URL joined with ``endpoint`` (an absolute ``endpoint`` is used as
is). GET sends ``params`` as the query string, POST as a JSON body. Pagination styles: ``page``
counts ``page_param`` up until an empty page; ``cursor`` sends the body's ``cursor_path`` value as
``cursor_param`` until it is missing or a page is empty; ``next_link`` follows the body's
``next_link_path`` (or the ``Link: rel="next"`` header), whose URL carries its own query. A request
seen twice, or a page that repeats the previous one, is a pagination loop and fails the source.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from airflow_agent_provider.contracts import FileSource, HttpSource, Pagination
from airflow_agent_provider.engines.sources import Sink, first_line
from airflow_agent_provider.engines.sources.file import extract_file
from airflow_agent_provider.exceptions import SourceError, SourceUnavailable
from airflow_agent_provider.redaction import redact

if TYPE_CHECKING:
    import requests

RETRY_BASE_DELAY_S = 0.5
RETRY_MAX_DELAY_S = 8.0
RETRY_AFTER_CAP_S = 30.0
_MISSING = object()
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


@dataclass(frozen=True)
class HttpEndpoint:
    """Where an HTTP source's connection points, as the operator's ``HttpHook`` built it.

    :param base_url: scheme, host and optional base path, e.g. ``https://api.example.com/v1``.
    :param session: the session to send with: the connection's auth, headers, TLS verification and
        proxies (a source's own ``headers`` win over its headers); a plain session when None. Closed
        when the source is done.
    """

    base_url: str
    session: requests.Session | None = None


def extract_http(source: HttpSource, endpoint: HttpEndpoint, sink: Sink) -> None:
    """Fetch every page of ``source`` and stage its records; no records stage nothing."""
    with tempfile.TemporaryDirectory(prefix="aap-http-") as folder:
        spool = os.path.join(folder, f"{source.name}.jsonl")
        if _download(source, endpoint, sink, spool) == 0:
            return
        spooled = FileSource(name=source.name, type="file", path=spool, format="jsonl", chunk_size=source.chunk_size)
        extract_file(spooled, sink)


def _download(source: HttpSource, endpoint: HttpEndpoint, sink: Sink, spool: str) -> int:
    import requests

    total = pages = 0
    started = time.monotonic()
    with endpoint.session or requests.Session() as session, open(spool, "wb") as out:
        if session.headers.get("Accept") in (None, "*/*"):  # requests' default, or none set
            session.headers["Accept"] = "application/json"
        session.headers.update(source.headers)
        for records in _pages(session, source, endpoint, sink):
            pages += 1
            total += len(records)
            if records:
                out.write(("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n").encode())
            sink.progress(total, time.monotonic() - started, unit="records fetched")
    sink.pages = pages
    return total


def _url(base_url: str, endpoint: str) -> str:
    if endpoint.startswith(("http://", "https://")) or not base_url:
        return endpoint
    return base_url.rstrip("/") + ("/" + endpoint.lstrip("/") if endpoint else "")


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


# ---- pagination ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Page:
    """One fetched page: its JSON body, the response, and the records found in it."""

    body: Any
    response: requests.Response
    records: list[Any]


def _pages(session: requests.Session, source: HttpSource, endpoint: HttpEndpoint, sink: Sink) -> Iterator[list[Any]]:
    url, params = _url(endpoint.base_url, source.endpoint), dict(source.params)
    pagination = source.pagination
    if pagination is None:
        yield _fetch(session, source, url, params, sink).records
        return
    if pagination.style == "page":
        params[pagination.page_param] = pagination.start_page
        if pagination.size_param and pagination.page_size:
            params[pagination.size_param] = pagination.page_size
    seen = {_request_key(url, params)}
    previous: list[Any] | None = None
    for number in range(1, pagination.max_pages + 1):
        page = _fetch(session, source, url, params, sink)
        if pagination.style == "page" and page.records and page.records == previous:
            raise SourceError(
                source.name,
                f"pagination loops: page {number} returned the same records as the page before "
                f"(does the API read the {pagination.page_param!r} parameter?)",
            )
        yield page.records
        step = _next_request(pagination, url, params, page)
        if step is None:
            return
        url, params = step
        _check_new(source, seen, url, params, number=number)
        previous = page.records
    sink.warnings.append(f"{source.name}: stopped after max_pages={pagination.max_pages}; the API had more pages")


def _next_request(
    pagination: Pagination, url: str, params: dict[str, Any], page: _Page
) -> tuple[str, dict[str, Any]] | None:
    """The next page's URL and parameters, or None after the last page."""
    if pagination.style == "next_link":
        link = _dig(page.body, pagination.next_link_path) if pagination.next_link_path else _link(page.response)
        return (urljoin(page.response.url, str(link)), {}) if link not in (None, "", _MISSING) else None
    if not page.records:
        return None
    if pagination.style == "page":
        return url, {**params, pagination.page_param: params[pagination.page_param] + 1}
    cursor = _dig(page.body, str(pagination.cursor_path))
    if cursor in (None, "", _MISSING):
        return None
    return url, {**params, pagination.cursor_param: cursor}


def _link(response: requests.Response) -> str | None:
    """The ``rel="next"`` URL of the Link header, if any."""
    return response.links.get("next", {}).get("url")


def _request_key(url: str, params: dict[str, Any]) -> str:
    return url + "?" + json.dumps(sorted((str(k), str(v)) for k, v in params.items()))


def _check_new(source: HttpSource, seen: set[str], url: str, params: dict[str, Any], *, number: int) -> None:
    """Raise when the next request is one already made: the API's pagination goes round in circles."""
    key = _request_key(url, params)
    if key not in seen:
        seen.add(key)
        return
    pagination = source.pagination
    if pagination is not None and pagination.style == "cursor":
        what = f"cursor {first_line(str(params.get(pagination.cursor_param)), 60)!r} came back"
    else:
        what = f"the next link to {_path(url)} points to a page already fetched"
    raise SourceError(source.name, f"pagination loops: after page {number}, {what}")


# ---- one request, with retries ---------------------------------------------------------------


def _fetch(session: requests.Session, source: HttpSource, url: str, params: dict[str, Any], sink: Sink) -> _Page:
    response = _send(session, source, url, params, sink)
    try:
        body = response.json()
    except ValueError as err:
        kind = response.headers.get("Content-Type", "no content type")
        raise SourceError(
            source.name, f"the response of {source.method} {_path(url)} is not JSON ({kind}): {_snippet(response)}"
        ) from err
    return _Page(body, response, _records(source, body, response))


def _send(session: requests.Session, source: HttpSource, url: str, params: dict[str, Any], sink: Sink) -> Any:
    import requests

    attempts = source.max_retries + 1
    query, body = (params, None) if source.method == "GET" else (None, params)
    for attempt in range(1, attempts + 1):
        try:
            response = session.request(source.method, url, params=query, json=body, timeout=source.timeout_s)
        except (requests.Timeout, requests.ConnectionError) as err:
            if attempt == attempts:
                raise SourceError(source.name, _network_cause(err, source, url, attempts)) from err
            delay, why = _backoff(attempt), type(err).__name__
        else:
            if response.status_code < 400:
                return response
            if not _retryable(response.status_code) or attempt == attempts:
                failure = SourceUnavailable if _retryable(response.status_code) else SourceError
                raise failure(source.name, _status_cause(response, source, url, attempt))
            delay, why = _retry_after(response) or _backoff(attempt), f"HTTP {response.status_code}"
        sink.say(f"{why} from {_path(url)}; retrying in {delay:.1f} s (attempt {attempt + 1} of {attempts})")
        sink.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


def _backoff(attempt: int) -> float:
    return float(min(RETRY_BASE_DELAY_S * 2 ** (attempt - 1), RETRY_MAX_DELAY_S))


def _retry_after(response: requests.Response) -> float | None:
    """The server's Retry-After (seconds or an HTTP date), capped at ``RETRY_AFTER_CAP_S``."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _status_cause(response: requests.Response, source: HttpSource, url: str, attempts: int) -> str:
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    body = _snippet(response)
    return (
        f"HTTP {response.status_code} {response.reason or ''}".rstrip()
        + f" from {source.method} {_path(url)}{tries}"
        + (f": {body}" if body else "")
    )


def _network_cause(err: Exception, source: HttpSource, url: str, attempts: int) -> str:
    import requests

    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    if isinstance(err, requests.Timeout):
        return f"{source.method} {_path(url)} timed out after {source.timeout_s:g} s{tries}"
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    reason = _ERRNO_RE.search(str(err))
    why = reason.group(1).strip() if reason else type(err).__name__
    return f"cannot connect to {parts.scheme}://{host} ({why}){tries}"


def _snippet(response: requests.Response, limit: int = 200) -> str:
    text = " ".join(response.text.split())
    return redact(text if len(text) <= limit else text[: limit - 1] + "…")


# ---- records in the body ---------------------------------------------------------------------


def _dig(body: Any, dotted: str | None) -> Any:
    node = body
    for part in (dotted or "").split(".") if dotted else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _records(source: HttpSource, body: Any, response: requests.Response) -> list[Any]:
    """The list of record objects of one page."""
    where = f"records_path {source.records_path!r}" if source.records_path else "the top level"
    origin = f"{source.method} {_path(response.url)}"
    data = _dig(body, source.records_path)
    if data is _MISSING:
        raise SourceError(source.name, f"{where} is not in the response of {origin} (top-level keys: {_keys(body)})")
    if data is None:
        return []
    if isinstance(data, dict):
        raise SourceError(
            source.name,
            f"expected a JSON array of records at {where} of {origin}, found an object with keys "
            f"{_keys(data)}; set records_path to the key that holds the list",
        )
    if not isinstance(data, list):
        raise SourceError(source.name, f"expected a JSON array of records at {where} of {origin}, found {_kind(data)}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise SourceError(source.name, f"record {index} at {where} of {origin} is {_kind(record)}, not an object")
    return data


def _keys(value: Any) -> str:
    if not isinstance(value, dict):
        return f"none, it is {_kind(value)}"
    names = list(value)
    return ", ".join(map(str, names[:10])) + (", ..." if len(names) > 10 else "") if names else "none"


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
