// The history API's answer: JSON schema and its TypeScript twin. No runtime
// imports, so the dashboard can import the types too.

/** One stored reading; (boot, seq) identifies it within its device. */
export interface HistorySample {
  boot: number;
  seq: number;
  /** Epoch ms. */
  ts: number;
  m: Record<string, number>;
}

/** One bucket of a downsampled series; `ts` is the bucket's start. */
export interface Aggregate {
  ts: number;
  avg: number;
  min: number;
  max: number;
  count: number;
}

interface Window {
  deviceId: string;
  from: number;
  to: number;
}

export type HistoryAnswer =
  | (Window & { resolution: "raw"; samples: HistorySample[] })
  | (Window & { resolution: number; series: Record<string, Aggregate[]> });

const metricValues = { type: "object", additionalProperties: { type: "number" } } as const;

export const historySchema = {
  type: "object",
  additionalProperties: false,
  required: ["deviceId", "from", "to", "resolution"],
  properties: {
    deviceId: { type: "string" },
    from: { type: "integer" },
    to: { type: "integer" },
    resolution: { type: ["string", "integer"] },
    samples: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["boot", "seq", "ts", "m"],
        properties: { boot: { type: "integer" }, seq: { type: "integer" }, ts: { type: "integer" }, m: metricValues },
      },
    },
    series: {
      type: "object",
      additionalProperties: {
        type: "array",
        items: {
          type: "object",
          additionalProperties: false,
          required: ["ts", "avg", "min", "max", "count"],
          properties: {
            ts: { type: "integer" },
            avg: { type: "number" },
            min: { type: "number" },
            max: { type: "number" },
            count: { type: "integer" },
          },
        },
      },
    },
  },
} as const;
