"""What the service checks before doing any work: the service token, request parameters, body size.

Parameters follow the event contract (lib/reelhouse/events/contract.py): the ids and device
fields a feed request carries end up in impression events, so they are validated by the same
rules the ingestion applies, and a request the contract would quarantine is refused with 422
instead. Unknown and repeated query parameters are refused too: a typo (``user=``) should not
silently give a default feed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from reelhouse.config import ServingConfig
from reelhouse.errors import ConfigError
from reelhouse.events.contract import COMMON_FIELDS, DEVICE_FIELDS, DEVICE_OS, NETWORKS, REASON_MISSING, REASON_VALUE

_SPECS = {spec.name: spec for spec in COMMON_FIELDS}
_DEVICE = {spec.name: spec for spec in DEVICE_FIELDS}
ID_PATTERN = _SPECS["user_id"].pattern or ""
APP_VERSION_PATTERN = _DEVICE["app_version"].pattern or ""
COUNTRY_PATTERN = _DEVICE["country"].pattern or ""
OS_CHOICES = tuple(sorted(DEVICE_OS))
NETWORK_CHOICES = tuple(sorted(NETWORKS))

_ID = re.compile(ID_PATTERN)
_APP_VERSION = re.compile(APP_VERSION_PATTERN)
_COUNTRY = re.compile(COUNTRY_PATTERN)
_K = re.compile(r"^[0-9]{1,4}$")

FEED_PARAMETERS = ("user_id", "k", "session_id", "os", "app_version", "country", "network")
DEFAULT_DEVICE = {"os": "other", "app_version": "0", "country": "ZZ", "network": "unknown"}

# Reasons of the refusals made here (the contract's own where they mean the same); the OpenAPI
# document lists them as the enums of its error answers.
AUTHORIZATION = "authorization"  # the field a missing or wrong token is reported under
UNAUTHORIZED = "unauthorized"
UNKNOWN_PARAMETER = "unknown_parameter"
REPEATED_PARAMETER = "repeated_parameter"
BODY_TOO_LARGE = "body_too_large"
FEED_PARAMETER_REASONS = (REASON_MISSING, REASON_VALUE, UNKNOWN_PARAMETER, REPEATED_PARAMETER)


# Control flow of request checks (it becomes the HTTP answer), hence not in errors.py.
class RequestError(Exception):
    """A request refused before any work: HTTP ``status`` and one entry per problem."""

    def __init__(self, status: int, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems[0]["reason"] if problems else str(status))
        self.status = status
        self.problems = problems


def problem(field: str | None, reason: str, detail: str) -> dict[str, Any]:
    return {"field": field, "reason": reason, "detail": detail}


@dataclass(frozen=True)
class FeedParams:
    user_id: str
    k: int
    session_id: str | None
    os: str
    app_version: str
    country: str
    network: str

    @property
    def device(self) -> dict[str, str]:
        return {"os": self.os, "app_version": self.app_version, "country": self.country, "network": self.network}


def parse_feed_params(pairs: list[tuple[str, str]], serving: ServingConfig) -> FeedParams:
    """Validate the query of ``GET /v1/feed``; raises :class:`RequestError` (422) listing every problem."""
    problems: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in FEED_PARAMETERS:
            problems.append(problem(name, UNKNOWN_PARAMETER, f"accepted parameters: {', '.join(FEED_PARAMETERS)}"))
        elif name in values:
            problems.append(problem(name, REPEATED_PARAMETER, "give each parameter once"))
        else:
            values[name] = value

    user_id = values.get("user_id")
    if user_id is None:
        problems.append(problem("user_id", REASON_MISSING, "user_id is required"))
    elif not _ID.fullmatch(user_id):
        problems.append(problem("user_id", REASON_VALUE, f"user_id must match {ID_PATTERN}"))
    session_id = values.get("session_id")
    if session_id is not None and not _ID.fullmatch(session_id):
        problems.append(problem("session_id", REASON_VALUE, f"session_id must match {ID_PATTERN}"))
    k = serving.default_k
    if "k" in values:
        raw = values["k"]
        if not _K.fullmatch(raw) or not 1 <= int(raw) <= serving.max_k:
            problems.append(
                problem("k", REASON_VALUE, f"k must be an integer in [1, {serving.max_k}], got {raw[:20]!r}")
            )
        else:
            k = int(raw)
    device = dict(DEFAULT_DEVICE)
    for name in ("os", "app_version", "country", "network"):
        if name in values:
            device[name] = values[name]
    if device["os"] not in DEVICE_OS:
        problems.append(problem("os", REASON_VALUE, f"os must be one of {list(OS_CHOICES)}"))
    if device["network"] not in NETWORKS:
        problems.append(problem("network", REASON_VALUE, f"network must be one of {list(NETWORK_CHOICES)}"))
    if not _APP_VERSION.fullmatch(device["app_version"]):
        problems.append(problem("app_version", REASON_VALUE, f"app_version must match {APP_VERSION_PATTERN}"))
    if not _COUNTRY.fullmatch(device["country"]):
        problems.append(problem("country", REASON_VALUE, f"country must match {COUNTRY_PATTERN}"))
    if problems:
        raise RequestError(422, problems)
    assert user_id is not None
    return FeedParams(user_id, k, session_id, device["os"], device["app_version"], device["country"], device["network"])


# --------------------------------------------------------------------------------------- token
def require_token(serving: ServingConfig) -> str:
    """The configured service token (GET /v1/feed, POST /v1/events); the service does not start without one."""
    token = serving.token
    if token is None or not token.strip():
        raise ConfigError(
            "serving.token is not set: the feed service refuses to start without a service token. Set it in the "
            "git-ignored conf/local.local.yaml (serving: {token: <a long random string>}) or in the environment "
            "as REELHOUSE__SERVING__TOKEN"
        )
    return token


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``; constant-time in the token.

    An unset, empty or blank token authorises nobody, and neither does an empty credential: a
    service started around :func:`require_token` must still never answer ``Bearer `` with yes."""
    if token is None or not token.strip() or header is None:
        return False
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.encode(), token.encode())


# --------------------------------------------------------------------------------------- bodies
async def read_bounded(stream: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes.

    A declared ``Content-Length`` above the limit is refused before reading; a body sent without
    one (chunked) is read until it passes the limit, never further.
    """
    if declared_length is not None:
        if not declared_length.isdigit():
            raise RequestError(400, [problem("content-length", REASON_VALUE, "Content-Length must be an integer")])
        if int(declared_length) > limit:
            raise RequestError(413, [problem("body", BODY_TOO_LARGE, f"{declared_length} bytes > {limit}")])
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise RequestError(413, [problem("body", BODY_TOO_LARGE, f"more than {limit} bytes")])
        chunks.append(chunk)
    return b"".join(chunks)
