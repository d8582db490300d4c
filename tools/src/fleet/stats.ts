// Latencies of a load run, summarised the way the benchmarks report them.

export interface Summary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Values in milliseconds, summarised; an empty set reads as zeros. */
export class Latencies {
  private readonly values: number[] = [];

  add(ms: number): void {
    this.values.push(ms);
  }

  get count(): number {
    return this.values.length;
  }

  summary(): Summary {
    if (this.values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
    const sorted = [...this.values].sort((a, b) => a - b);
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
    return { count: sorted.length, p50: at(50), p99: at(99), max: sorted[sorted.length - 1] as number };
  }
}

export function formatSummary({ count, p50, p99, max }: Summary): string {
  return `p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${max.toFixed(0)} ms (${count})`;
}
