// How values read on screen: units, precision, and relative times.

export function temperature(value: number | undefined): string {
  return value === undefined ? "–" : `${value.toFixed(2)} °C`;
}

/** The wire carries pascals; operators read hectopascals. */
export function pressure(pascals: number | undefined): string {
  return pascals === undefined ? "–" : `${(pascals / 100).toFixed(1)} hPa`;
}

export function ago(ts: number | null, now: number): string {
  if (ts === null) return "never";
  const seconds = Math.max(0, Math.round((now - ts) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(ts).toLocaleString();
}
