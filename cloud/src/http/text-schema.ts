// Schema pieces that put the server's own bounds into the schema, so a schema-driven client never
// sends what the server refuses. No imports: answer shapes the dashboard bundles use them too.

/**
 * A name people type: no control characters (NUL included), no surrounding spaces. Written with
 * \u escapes rather than \p{Cc}, so every regular-expression engine reads it alike.
 */
export const DISPLAY_NAME_PATTERN =
  "^[^\\s\\u0000-\\u001f\\u007f](?:[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f])?$";

/** Free text of one line: anything but control characters (NUL included). */
export const ONE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f]*$";

/** Digits of `n` as a regular expression for the non-negative integers 0..n with that many digits, by prefix. */
function upTo(digits: string): string {
  if (digits.length === 0) return "";
  const [first, rest] = [Number(digits[0]), digits.slice(1)];
  const anyTail = rest.length > 0 ? `[0-9]{${rest.length}}` : "";
  const lower = first > 0 ? [`[0-${first - 1}]${anyTail}`] : [];
  const tail = upTo(rest);
  return [...lower, `${first}${tail === "" ? "" : `(?:${tail})`}`].join("|");
}

/**
 * A query-string integer 1..max (query values are strings here: nothing is coerced), e.g.
 * countPattern(200) matches 1..9, 10..99, 100..199 and 200, and nothing with a leading zero.
 */
export function countPattern(max: number): string {
  return `^${countAlternatives(max)}$`;
}

/** A list's `limit` query parameter: 1..max, `fallback` when absent. */
export function limitParameter(max: number, fallback: number) {
  return { type: "string", pattern: countPattern(max), description: `1..${max}, default ${fallback}.` } as const;
}

/** countPattern without its anchors, to combine with other alternatives. */
function countAlternatives(max: number): string {
  const digits = String(max);
  const shorter = digits.length > 1 ? [`[1-9]${digits.length > 2 ? `[0-9]{0,${digits.length - 2}}` : ""}`] : [];
  const [first, rest] = [Number(digits[0]), digits.slice(1)];
  const anyTail = rest.length > 0 ? `[0-9]{${rest.length}}` : "";
  const sameLength = [
    ...(first > 1 ? [`[1-${first - 1}]${anyTail}`] : []),
    `${first}${rest === "" ? "" : `(?:${upTo(rest)})`}`,
  ];
  return `(?:${[...shorter, ...sameLength].join("|")})`;
}

/** A TCP port 1..65535, unanchored. */
export function portPattern(): string {
  return countAlternatives(65_535);
}

/** A paging cursor as the API hands them out: base64url, opaque; only a value a listing returned is a position. */
export const CURSOR_PATTERN = "^[A-Za-z0-9_-]{1,512}$";

/** Epoch milliseconds, or an ISO 8601 date or date-time (zone optional), as history and exports take them. */
export const INSTANT_PATTERN =
  "^(?:[0-9]{1,15}|[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])" +
  "(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,3})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?)$";

const METRIC = "[a-z][a-z0-9_]{0,31}";
/** 1..32 comma-separated metric names (the wire's metric name rule). */
export const METRIC_LIST_PATTERN = `^${METRIC}(?:,${METRIC}){0,31}$`;

const DEVICE_ID = "[A-Za-z0-9][A-Za-z0-9_-]{0,63}";
/** 1..max comma-separated device ids: kept short enough for the whole URL to fit Node's 16 KiB of headers. */
export function deviceListPattern(max: number): string {
  return `^${DEVICE_ID}(?:,${DEVICE_ID}){0,${max - 1}}$`;
}

/** `raw`, `auto`, `1m`, `1h`, `1d` or a bucket width in seconds 1..max. */
export function resolutionPattern(max: number): string {
  return `^(?:raw|auto|1m|1h|1d|${countAlternatives(max)})$`;
}
