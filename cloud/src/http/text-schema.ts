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
  const digits = String(max);
  const shorter = digits.length > 1 ? [`[1-9]${digits.length > 2 ? `[0-9]{0,${digits.length - 2}}` : ""}`] : [];
  const [first, rest] = [Number(digits[0]), digits.slice(1)];
  const anyTail = rest.length > 0 ? `[0-9]{${rest.length}}` : "";
  const sameLength = [
    ...(first > 1 ? [`[1-${first - 1}]${anyTail}`] : []),
    `${first}${rest === "" ? "" : `(?:${upTo(rest)})`}`,
  ];
  return `^(?:${[...shorter, ...sameLength].join("|")})$`;
}
