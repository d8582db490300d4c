// A gateway's long poll: ask for work now, and while there is none, wait for a ring on this replica
// (or re-check every recheckMs for work queued through another replica) until the wait runs out,
// the gateway gives up, or the server shuts down.

import { LIMITS } from "@kestrel/wire";
import type { FastifyReply } from "fastify";
import type { CommandBell } from "../commands/command-bell.ts";

export async function longPoll<T>(options: {
  tenantId: string;
  waitSeconds: number;
  recheckMs: number;
  bell: CommandBell;
  reply: FastifyReply;
  take: () => Promise<T[]>;
  /** Work taken for a gateway that gave up meanwhile; without this it waits for its lease to run out. */
  release?: (taken: T[]) => Promise<void>;
}): Promise<T[]> {
  const { tenantId, bell, reply } = options;
  const deadline = Date.now() + options.waitSeconds * 1000;
  // The gateway gave up on this poll: stop taking work for it.
  const gone = new AbortController();
  reply.raw.once("close", () => gone.abort());
  for (;;) {
    const taken = await options.take();
    if (gone.signal.aborted && taken.length > 0 && options.release) {
      // Nobody will read this answer.
      await options.release(taken);
      return [];
    }
    const remaining = deadline - Date.now();
    if (taken.length > 0 || remaining <= 0 || gone.signal.aborted || bell.isClosed) {
      // The server stopped closing idle connections before this answer: close this one with it.
      if (bell.isClosed) reply.header("connection", "close");
      return taken;
    }
    await bell.wait(tenantId, Math.min(remaining, options.recheckMs), gone.signal);
  }
}

export const MAX_WAIT_SECONDS = 25;
const MAX_POLL_DEVICES = 10_000;
/** Up to 10,000 device ids of up to 64 characters: more than the API's default 64 KiB. */
export const POLL_BODY_LIMIT = 1024 * 1024;

/** A gateway poll's body: the devices it can deliver to now, how long to wait, how many items at most. */
export function pollBodySchema(maxItems: number) {
  return {
    type: "object",
    additionalProperties: false,
    required: ["devices"],
    properties: {
      devices: {
        type: "array",
        maxItems: MAX_POLL_DEVICES,
        items: { type: "string", minLength: 1, maxLength: LIMITS.deviceIdLength },
      },
      wait: { type: "integer", minimum: 0, maximum: MAX_WAIT_SECONDS },
      max: { type: "integer", minimum: 1, maximum: maxItems },
    },
    examples: [{ devices: ["sim-001", "sim-002"], wait: 0, max: 50 }],
  } as const;
}

export interface PollBody {
  devices: string[];
  wait?: number;
  max?: number;
}
