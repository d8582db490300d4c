// Turns `d/{id}/cmd` messages into at most one execution each: validates, refuses expired
// commands, acks `accepted` then `done` or `failed`, and answers a repeated command id with its
// last ack instead of running it again (recent ids in RAM, the last few in flash across reboots).

import {
  CLOCK_VALID_FROM_MS,
  type CommandAck,
  type DeviceCommand,
  parseDeviceCommand,
  WIRE_VERSION,
} from "@kestrel/wire";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import Preference from "preference";

export type CommandResult = Record<string, string | number | boolean>;

/** What executing a command came to; `afterAck` runs once the final ack is recorded and sent (reboot). */
export type CommandOutcome =
  | { status: "done"; result?: CommandResult; afterAck?: () => void }
  | { status: "failed"; reason: string };

export type CommandExecutor = (command: DeviceCommand) => CommandOutcome;

/** Final acks remembered in RAM, oldest forgotten first. */
const RECENT_IN_RAM = 32;
/** Final acks kept in flash, so a command redelivered after a reboot (reboot itself) is not rerun. */
const RECENT_IN_FLASH = 8;
const PREFERENCE_DOMAIN = "kestrel";
const PREFERENCE_KEY = "cmdacks";
const REASON_MAX = 256;
const COMMAND_ID = /"id"\s*:\s*"([A-Za-z0-9_-]{1,64})"/;

function loadPersisted(log: Log): CommandAck[] {
  try {
    const text = Preference.get(PREFERENCE_DOMAIN, PREFERENCE_KEY);
    const saved: unknown = typeof text === "string" ? JSON.parse(text) : [];
    return Array.isArray(saved) ? (saved as CommandAck[]) : [];
  } catch (error) {
    log.write("warn", "command history unreadable, starting empty", { error: describeError(error) });
    return [];
  }
}

export default class CommandHandler {
  readonly #execute: CommandExecutor;
  readonly #send: (ack: string) => void;
  /** id → serialized final ack; Map keeps insertion order, so the first key is the oldest. */
  readonly #recent = new Map<string, string>();
  readonly #persisted: CommandAck[];
  readonly #log: Log;

  /** send publishes one serialized CommandAck; it must not throw. */
  constructor(execute: CommandExecutor, send: (ack: string) => void, log: Log) {
    this.#execute = execute;
    this.#send = send;
    this.#log = log;
    this.#persisted = loadPersisted(log);
    for (const ack of this.#persisted) this.#recent.set(ack.id, JSON.stringify(ack));
  }

  handle(payload: ArrayBuffer): void {
    let text: string;
    try {
      text = String.fromArrayBuffer(payload);
    } catch (error) {
      this.#log.write("warn", "command is not UTF-8, ignored", { error: describeError(error) });
      return;
    }
    const parsed = parseDeviceCommand(text);
    if (!parsed.ok) {
      // Without a usable id nobody waits for an ack; with one, the sender learns why.
      const id = COMMAND_ID.exec(text)?.[1];
      this.#log.write("warn", "invalid command", { id, code: parsed.error.code });
      if (id !== undefined && !this.#repeat(id))
        this.#finish({
          v: WIRE_VERSION,
          id,
          status: "failed",
          reason: reasonOf(`${parsed.error.code}: ${parsed.error.message}`),
        });
      return;
    }
    const command = parsed.value;
    if (this.#repeat(command.id)) return;
    const now = Date.now();
    if (command.expiresAt !== undefined && (now < CLOCK_VALID_FROM_MS || command.expiresAt < now)) {
      this.#log.write("info", "command refused", { id: command.id, name: command.name, reason: "expired" });
      this.#finish({ v: WIRE_VERSION, id: command.id, status: "failed", reason: "expired" });
      return;
    }
    this.#send(JSON.stringify({ v: WIRE_VERSION, id: command.id, status: "accepted" } satisfies CommandAck));
    let outcome: CommandOutcome;
    try {
      outcome = this.#execute(command);
    } catch (error) {
      outcome = { status: "failed", reason: reasonOf(describeError(error)) };
    }
    this.#log.write("info", "command executed", { id: command.id, name: command.name, status: outcome.status });
    if (outcome.status === "failed") {
      this.#finish({ v: WIRE_VERSION, id: command.id, status: "failed", reason: reasonOf(outcome.reason) });
      return;
    }
    const ack: CommandAck = { v: WIRE_VERSION, id: command.id, status: "done" };
    if (outcome.result) ack.result = outcome.result;
    this.#finish(ack);
    try {
      outcome.afterAck?.();
    } catch (error) {
      this.#log.write("error", "command follow-up failed", { id: command.id, error: describeError(error) });
    }
  }

  /** A command id seen before: its last ack goes out again and nothing runs. */
  #repeat(id: string): boolean {
    const ack = this.#recent.get(id);
    if (ack === undefined) return false;
    this.#log.write("info", "repeated command, ack sent again", { id });
    this.#send(ack);
    return true;
  }

  /** Records the final ack (flash first, so a reset right after cannot rerun the command), then sends it. */
  #finish(ack: CommandAck): void {
    const text = JSON.stringify(ack);
    this.#recent.set(ack.id, text);
    if (this.#recent.size > RECENT_IN_RAM) {
      const oldest = this.#recent.keys().next().value;
      if (oldest !== undefined) this.#recent.delete(oldest);
    }
    const persisted = this.#persisted;
    persisted.push(ack);
    if (persisted.length > RECENT_IN_FLASH) persisted.splice(0, persisted.length - RECENT_IN_FLASH);
    try {
      Preference.set(PREFERENCE_DOMAIN, PREFERENCE_KEY, JSON.stringify(persisted));
    } catch (error) {
      this.#log.write("warn", "command history not saved", { error: describeError(error) });
    }
    this.#send(text);
  }
}

function reasonOf(text: string): string {
  return text.length > REASON_MAX ? text.slice(0, REASON_MAX) : text;
}
