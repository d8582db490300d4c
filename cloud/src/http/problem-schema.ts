// The API's one error shape, RFC 9457 problem details: JSON schema and its
// TypeScript twin. No runtime imports, so the dashboard can import the type.

export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** Stable and machine-readable; `detail` is for humans. */
  code: string;
}

export const problemSchema = {
  $id: "problem",
  type: "object",
  additionalProperties: false,
  required: ["type", "title", "status", "detail", "code"],
  properties: {
    type: { type: "string" },
    title: { type: "string" },
    status: { type: "integer" },
    detail: { type: "string" },
    code: { type: "string" },
  },
} as const;
