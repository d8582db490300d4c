// What never leaves the process in a log line or an error report: credentials by field name (at
// any of the first levels of a logged object) and by shape inside free text (bearer tokens, API and
// gateway keys, passwords in URLs or query strings). One list for pino's redaction and the error
// tracker's scrubber, so both hide the same things.

/** Field names whose values are secrets, wherever they appear. */
export const SECRET_FIELDS = [
  "authorization",
  "cookie",
  "set-cookie",
  "password",
  "initialPassword",
  "token",
  "secret",
  "signingSecret",
  "key",
  "apiKey",
  "gatewayKey",
  "secretsKey",
  "dsn",
] as const;

const SECRET_FIELD_SET = new Set<string>(SECRET_FIELDS.map((name) => name.toLowerCase()));

export const REDACTED = "[redacted]";

/** pino `redact` paths: each secret field at the top level and two levels down, and request headers. */
export function logRedactPaths(): string[] {
  const paths: string[] = [];
  for (const field of SECRET_FIELDS) {
    const plain = /^[A-Za-z_$][\w$]*$/.test(field);
    const access = plain ? `.${field}` : `["${field}"]`;
    paths.push(plain ? field : access, `*${access}`, `*.*${access}`);
  }
  paths.push("req.headers.authorization", "req.headers.cookie", 'req.headers["x-api-key"]');
  return paths;
}

// Bearer tokens, our key formats, URL user info and secret-looking query parameters in free text.
const SECRET_TEXT: Array<[RegExp, string]> = [
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/gi, `$1 ${REDACTED}`],
  [/\b(kst|kgw)_[A-Za-z0-9_-]{8,}/g, `$1_${REDACTED}`],
  [/(\/\/)[^/\s:@]+:[^/\s@]+@/g, `$1${REDACTED}@`],
  [/([?&](?:token|key|secret|password|api_key|access_token)=)[^&\s#]+/gi, `$1${REDACTED}`],
];

export function scrubText(text: string): string {
  let scrubbed = text;
  for (const [pattern, replacement] of SECRET_TEXT) scrubbed = scrubbed.replace(pattern, replacement);
  return scrubbed;
}

/** A deep copy with secret fields redacted and secret shapes scrubbed from every string. */
export function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === "string") return scrubText(value);
  if (value === null || typeof value !== "object" || depth > 12) return value;
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map(([name, item]) => [
      name,
      SECRET_FIELD_SET.has(name.toLowerCase()) ? REDACTED : scrubValue(item, depth + 1),
    ]),
  );
}
