"""Credentials for the schema-driven fuzz run of the cloud API (api-fuzz.test.ts starts the cloud).

Operator routes get an admin session, gateway routes the tenant's gateway key. A session the run
itself ends (logout, switch) is replaced on the next 401; the schema promises which requests are
well formed, not which credentials exist.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["KESTREL_FUZZ_URL"]


def _credential_kind(case, _ctx):
    return "gateway" if case.operation.path.startswith("/api/gateway/") else "operator"


@schemathesis.auth(refresh_interval=600, cache_by_key=_credential_kind)
class KestrelAuth:
    def get(self, case, ctx):
        if _credential_kind(case, ctx) == "gateway":
            return os.environ["KESTREL_FUZZ_GATEWAY_KEY"]
        response = requests.post(
            f"{BASE_URL}/api/auth/login",
            json={"email": os.environ["KESTREL_FUZZ_EMAIL"], "password": os.environ["KESTREL_FUZZ_PASSWORD"]},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()["token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# Rules the OpenAPI document states in words because JSON Schema cannot say them (they relate two
# fields, or a field and the clock, or need a value only the server hands out). Positive cases that
# break one are not generated: the server refuses them with 400 by design, and says so. Negative
# cases are left alone. Each rule names where the API documents it.

MAX_RANGE_MS = 31 * 86_400_000
MAX_BUCKETS = 10_000
NAMED_WIDTHS_S = {"1m": 60, "1h": 3600, "1d": 86_400}
RANGE_OPERATIONS = {
    "/api/devices/{deviceId}/telemetry",
    "/api/devices/{deviceId}/telemetry/export",
    "/api/telemetry/export",
}


def _instant(raw):
    """Epoch ms of a from/to value as the server reads it (INSTANT_PATTERN), or None."""
    if raw is None or raw == "":
        return None
    if raw.isdigit():
        return int(raw)
    from datetime import datetime, timezone

    text = raw.replace("Z", "+00:00")
    if "T" not in text:
        text += "T00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None  # e.g. 30 February: the server rolls it over, Python refuses; not a range rule
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _makes_a_range(query):
    """protocol.md, history: `from` before `to` (default now and one hour before it), at most 31 days,
    at most 10,000 buckets of the resolution."""
    import time

    now = int(time.time() * 1000)
    to = _instant(query.get("to"))
    to = now if to is None else to
    start = _instant(query.get("from"))
    start = to - 3_600_000 if start is None else start
    if not (start < to and to - start <= MAX_RANGE_MS):
        return False
    resolution = query.get("resolution")
    width = NAMED_WIDTHS_S.get(resolution) or (int(resolution) if resolution and resolution.isdigit() else None)
    return width is None or (to - start) / (width * 1000) <= MAX_BUCKETS


# What `*` stands for in each field (7, also Sunday, only when named).
CRON_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
DAYS_IN_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}


def _cron_values(field, low, high, day_of_week):
    """The values a cron field names, or None when a range runs backwards or a value repeats."""
    seen = []
    for item in field.split(","):
        head, _, step = item.partition("/")
        start, end = (low, high) if head == "*" else (int(head.split("-")[0]), int(head.split("-")[-1]))
        if start > end:
            return None
        seen += [value % 7 if day_of_week else value for value in range(start, end + 1, int(step or 1))]
    return None if len(seen) != len(set(seen)) else set(seen)


def _valid_cron_semantics(cron):
    """The cron rules beyond syntax (schedule schema description), as cron-parser applies them:
    ascending ranges, no value named twice in a field (7 is Sunday, like 0), and an explicit day of
    month that exists in one of the months named."""
    fields = cron.split(" ")
    values = [_cron_values(field, *CRON_BOUNDS[i], i == 4) for i, field in enumerate(fields)]
    if any(named is None for named in values):
        return False
    if "*" not in fields[2] and "*" not in fields[3]:
        return min(values[2]) <= max(DAYS_IN_MONTH[month] for month in values[3])
    return True


def _poisons_prototypes(value):
    """protocol.md: JSON bodies holding `__proto__`, or `constructor` with `prototype`, are refused
    (400 invalid_json) before anything reads them."""
    if isinstance(value, dict):
        if "__proto__" in value or isinstance(value.get("constructor"), dict) and "prototype" in value["constructor"]:
            return True
        return any(_poisons_prototypes(item) for item in value.values())
    if isinstance(value, list):
        return any(_poisons_prototypes(item) for item in value)
    return False


def _valid_level(condition):
    """protocol.md, alerts: a level's op names its lines (above: high, below: low, outside: both, low
    below high), and clear levels sit on the inside of them."""
    op, low, high = condition.get("op"), condition.get("low"), condition.get("high")
    if (op != "above") != (low is not None) or (op != "below") != (high is not None):
        return False
    clear_low, clear_high = condition.get("clearLow"), condition.get("clearHigh")
    if clear_low is not None and (low is None or clear_low < low):
        return False
    if clear_high is not None and (high is None or clear_high > high):
        return False
    if op == "outside" and (low >= high or (clear_low if clear_low is not None else low) > (clear_high if clear_high is not None else high)):
        return False
    return True


def _valid_rule(body):
    """protocol.md, alerts: a consistent condition (levels as above; a rate's clear rate not above its rate)."""
    condition = body.get("condition") if isinstance(body, dict) else None
    if not isinstance(condition, dict):
        return True
    if condition.get("kind") in ("threshold", "system"):
        return _valid_level(condition)
    if condition.get("kind") == "rate" and condition.get("clearPerMinute") is not None:
        return condition["clearPerMinute"] <= condition.get("perMinute", 0)
    return True


# protocol.md, webhook endpoints: a public http(s) URL (an IP literal or a local name is refused).
PUBLIC_URL = __import__("re").compile(r"^https?://[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}(:[0-9]{1,5})?(/[^\s]*)?$")


@schemathesis.hook
def filter_case(ctx, case):
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive:
        return True
    path, method, query, body = case.operation.path, case.method.upper(), case.query or {}, case.body
    # Cursors are opaque: only a value a listing returned is a position (the stateful phase follows them).
    if "cursor" in query or _poisons_prototypes(body):
        return False
    if path in RANGE_OPERATIONS and not _makes_a_range(query):
        return False
    if path == "/api/org/settings" and isinstance(body, dict):
        retention = body.get("retention") or {}
        # protocol.md: rollupDays may not be shorter than rawDays.
        return retention.get("rollupDays", 0) >= retention.get("rawDays", 0)
    if path == "/api/keys" and method == "POST" and isinstance(body, dict) and body.get("expiresAt") is not None:
        import time

        # protocol.md: an API key's expiresAt is in the future.
        return body["expiresAt"] > time.time() * 1000 + 60_000
    if path == "/api/exports/schedules" and method == "POST" and isinstance(body, dict):
        return _valid_cron_semantics(body.get("cron", "* * * * *"))
    if path.startswith("/api/alerts/rules") and method in ("POST", "PATCH"):
        return _valid_rule(body)
    if path == "/api/alerts/silences" and method == "POST" and isinstance(body, dict):
        import time

        # protocol.md, silences: endsAt after startsAt (default now) and after now.
        now = time.time() * 1000
        return body.get("endsAt", 0) > max(body.get("startsAt", now), now) + 60_000
    if path.startswith("/api/webhooks/endpoints") and method in ("POST", "PATCH") and isinstance(body, dict):
        url = body.get("url")
        return url is None or bool(PUBLIC_URL.match(url))
    return True
