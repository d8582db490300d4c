// Commands sent to devices and their lifecycle: queued → sent (a gateway published it to the
// device's live connection) → delivered (the device acked `accepted`) → done | failed, or expired
// before delivery. A claim is won by a unique insert and leases the command to one gateway
// without changing its status: the gateway reports whether it could publish it, and a command it
// could not (the device went away meanwhile) is released at once and stays queued. Acks only move
// a command forward and terminal states are final, so several cloud replicas and gateways can
// work on the same commands without a transaction, and the history only grows.

import { randomBytes } from "node:crypto";
import type { CommandAck, CommandName, DeviceCommand } from "@kestrel/wire";
import { type Collection, type Db, type Filter, MongoServerError } from "mongodb";

export type CommandStatus = "queued" | "sent" | "delivered" | "done" | "failed" | "expired";

export interface CommandDoc {
  _id: string;
  tenantId: string;
  deviceId: string;
  id: string;
  name: CommandName;
  params?: Record<string, string | number | boolean>;
  status: CommandStatus;
  createdAt: Date;
  updatedAt: Date;
  expiresAt: Date;
  /** While a handed-out command is in flight, nobody else is handed it; afterwards it is offered again. */
  leaseUntil?: Date;
  /** How often a gateway was handed the command. */
  attempts: number;
  reason?: string;
  result?: Record<string, string | number | boolean>;
  /** A device's final ack that arrived once the command read `expired`: kept beside it, never replacing it. */
  late?: LateOutcome;
  history: Array<{ status: CommandStatus; at: Date }>;
}

export interface LateOutcome {
  status: "done" | "failed";
  at: Date;
  reason?: string;
  result?: Record<string, string | number | boolean>;
}

/** What a gateway did with a command it was handed. */
export type DeliveryOutcome = "published" | "not_connected" | "connection_lost";

/** A command handed to a gateway for one of its connected devices. */
export interface ClaimedCommand {
  deviceId: string;
  command: DeviceCommand;
}

export const MAX_COMMANDS_LISTED = 100;

const DUPLICATE_KEY = 11000;

const ACTIVE: readonly CommandStatus[] = ["queued", "sent", "delivered"];
/** Statuses that read `expired` once `expiresAt` passes. */
const UNDELIVERED: CommandStatus[] = ["queued", "sent"];

export function commandDocId(tenantId: string, deviceId: string, commandId: string): string {
  return `${tenantId}|${deviceId}|${commandId}`;
}

/** 16 random bytes, base64url: 22 characters, within the wire's command id syntax. */
export function newCommandId(): string {
  return randomBytes(16).toString("base64url");
}

/** What a reader sees: a queued or sent command past its expiry is expired even before anyone wrote so. */
export function effectiveStatus(doc: Pick<CommandDoc, "status" | "expiresAt">, now = Date.now()): CommandStatus {
  return (doc.status === "queued" || doc.status === "sent") && doc.expiresAt.getTime() <= now ? "expired" : doc.status;
}

export class CommandStore {
  private readonly commands: Collection<CommandDoc>;
  private readonly claims: Collection<{ _id: string; at: Date }>;

  constructor(
    db: Db,
    private readonly leaseMs = 60_000,
  ) {
    this.commands = db.collection<CommandDoc>("commands");
    this.claims = db.collection<{ _id: string; at: Date }>("command_claims");
  }

  static async createIndexes(db: Db): Promise<void> {
    const commands = db.collection<CommandDoc>("commands");
    await commands.createIndex({ tenantId: 1, status: 1 });
    await commands.createIndex({ tenantId: 1, deviceId: 1, createdAt: 1 });
  }

  async create(
    tenantId: string,
    deviceId: string,
    request: { name: CommandName; params?: Record<string, string | number | boolean>; ttlSeconds: number },
  ): Promise<CommandDoc> {
    const now = new Date();
    const id = newCommandId();
    const doc: CommandDoc = {
      _id: commandDocId(tenantId, deviceId, id),
      tenantId,
      deviceId,
      id,
      name: request.name,
      status: "queued",
      createdAt: now,
      updatedAt: now,
      expiresAt: new Date(now.getTime() + request.ttlSeconds * 1000),
      attempts: 0,
      history: [{ status: "queued", at: now }],
    };
    if (request.params !== undefined) doc.params = request.params;
    await this.commands.insertOne(doc);
    return doc;
  }

  find(tenantId: string, deviceId: string, commandId: string): Promise<CommandDoc | null> {
    return this.commands.findOne({ _id: commandDocId(tenantId, deviceId, commandId) });
  }

  list(tenantId: string, deviceId: string, limit: number): Promise<CommandDoc[]> {
    return this.commands
      .find({ tenantId, deviceId })
      .sort({ createdAt: -1 })
      .limit(Math.min(limit, MAX_COMMANDS_LISTED))
      .toArray();
  }

  /**
   * Hands the gateway the commands for these devices that are queued and not leased to another
   * gateway, or were handed out before and not finished within the lease or released (the device
   * drops a repeated id, so offering again is safe). A claim leases the command and leaves its
   * status alone: it becomes `sent` only when the gateway reports it published (recordDelivery).
   * Commands past their expiry are marked expired instead.
   */
  async claim(tenantId: string, deviceIds: ReadonlySet<string>, max: number): Promise<ClaimedCommand[]> {
    const now = new Date();
    // Equality filters only, so FerretDB answers them from its index; the rest is sifted here.
    const candidates = (
      await Promise.all(
        ACTIVE.map((status) =>
          this.commands
            .find({ tenantId, status }, { projection: { history: 0 } })
            .sort({ createdAt: 1 })
            .toArray(),
        ),
      )
    )
      .flat()
      .filter(
        (doc) =>
          deviceIds.has(doc.deviceId) &&
          (doc.leaseUntil === undefined ? doc.status === "queued" : doc.leaseUntil <= now),
      )
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());

    const claimed: ClaimedCommand[] = [];
    for (const doc of candidates) {
      if (claimed.length >= max) break;
      // A delivered command past expiry would only be refused by the device; its outcome stays unknown.
      if (doc.expiresAt <= now && doc.status === "delivered") continue;
      if (!(await this.takeTurn(doc))) continue;
      if (doc.expiresAt <= now) {
        // At the moment readers have seen it expire since (effectiveStatus), so the history agrees.
        await this.commands.updateOne(
          { _id: doc._id },
          {
            $set: { status: "expired", updatedAt: doc.expiresAt },
            $unset: { leaseUntil: "" },
            $inc: { attempts: 1 },
            $push: { history: { status: "expired", at: doc.expiresAt } },
          },
        );
        continue;
      }
      // The status stays what it is, so a concurrent ack is never rolled back by a claim.
      await this.commands.updateOne(
        { _id: doc._id },
        { $set: { updatedAt: now, leaseUntil: new Date(now.getTime() + this.leaseMs) }, $inc: { attempts: 1 } },
      );
      claimed.push({ deviceId: doc.deviceId, command: toDeviceCommand(doc) });
    }
    return claimed;
  }

  /**
   * FerretDB runs findAndModify and filtered updates as read-then-write, so two replicas could
   * both win a status compare-and-set. A unique insert is atomic everywhere: whoever inserts
   * the token for the command's next attempt is the one claimer of that attempt.
   */
  private async takeTurn(doc: CommandDoc): Promise<boolean> {
    try {
      await this.claims.insertOne({ _id: `${doc._id}#${doc.attempts + 1}`, at: new Date() });
      return true;
    } catch (error) {
      if (error instanceof MongoServerError && error.code === DUPLICATE_KEY) return false;
      throw error;
    }
  }

  /**
   * What the gateway did with a command it was handed: `published` to the device's connection
   * moves a queued command to `sent`; one it could not publish (`not_connected`) or whose device
   * went away before acking it (`connection_lost`) is released, so the device's next connection
   * is handed it at once instead of after the lease. False when nothing changed.
   */
  async recordDelivery(
    tenantId: string,
    deviceId: string,
    commandId: string,
    outcome: DeliveryOutcome,
    at: Date,
  ): Promise<boolean> {
    const _id = commandDocId(tenantId, deviceId, commandId);
    const result =
      outcome === "published"
        ? await this.commands.updateOne(
            { _id, status: "queued", expiresAt: { $gt: new Date() } },
            { $set: { status: "sent", updatedAt: at }, $push: { history: { status: "sent", at } } },
          )
        : await this.commands.updateOne({ _id, status: { $in: [...ACTIVE] } }, { $set: { leaseUntil: at } });
    return result.modifiedCount === 1;
  }

  /**
   * Applies a device's ack; false when the command is unknown or already past that point. Terminal
   * states are final, judged by this cloud's clock: a command that reads `expired` (queued or sent
   * past `expiresAt`) stays expired; its expiry is written down, and a late `done`/`failed` is kept
   * beside it in `late`.
   */
  async applyAck(tenantId: string, deviceId: string, ack: CommandAck, receivedAt: number): Promise<boolean> {
    const at = new Date(receivedAt);
    const now = new Date();
    const _id = commandDocId(tenantId, deviceId, ack.id);
    const undelivered: Filter<CommandDoc> = { status: { $in: UNDELIVERED }, expiresAt: { $gt: now } };
    if (ack.status === "accepted") {
      const result = await this.commands.updateOne(
        { _id, ...undelivered },
        { $set: { status: "delivered", updatedAt: at }, $push: { history: { status: "delivered", at } } },
      );
      return result.modifiedCount === 1 || (await this.expireLate(_id, now));
    }
    // The device refuses an expired command with this reason: that is expiry, not a failure.
    const status: CommandStatus = ack.status === "done" ? "done" : ack.reason === "expired" ? "expired" : "failed";
    const set: Partial<CommandDoc> = { status, updatedAt: at };
    if (ack.reason !== undefined) set.reason = ack.reason;
    if (ack.result !== undefined) set.result = ack.result;
    const result = await this.commands.updateOne(
      { _id, $or: [{ status: "delivered" }, undelivered] },
      { $set: set, $unset: { leaseUntil: "" }, $push: { history: { status, at } } },
    );
    if (result.modifiedCount === 1) return true;
    const late: LateOutcome | undefined =
      status === "done" || status === "failed"
        ? {
            status,
            at,
            ...(ack.reason !== undefined && { reason: ack.reason }),
            ...(ack.result !== undefined && { result: ack.result }),
          }
        : undefined;
    return this.expireLate(_id, now, late);
  }

  /**
   * Writes down the expiry of a command that reads expired (at `expiresAt`, as readers saw it),
   * with the late outcome beside it; keeps the first late outcome of one already expired.
   */
  private async expireLate(_id: string, now: Date, late?: LateOutcome): Promise<boolean> {
    const doc = await this.commands.findOne({ _id }, { projection: { status: 1, expiresAt: 1, late: 1 } });
    if (!doc || effectiveStatus(doc, now.getTime()) !== "expired") return false;
    if (doc.status !== "expired") {
      const result = await this.commands.updateOne(
        { _id, status: { $in: UNDELIVERED } },
        {
          $set: { status: "expired", updatedAt: doc.expiresAt, ...(late && { late }) },
          $unset: { leaseUntil: "" },
          $push: { history: { status: "expired", at: doc.expiresAt } },
        },
      );
      return result.modifiedCount === 1;
    }
    if (!late || doc.late) return false;
    const result = await this.commands.updateOne(
      { _id, status: "expired", late: { $exists: false } },
      { $set: { late } },
    );
    return result.modifiedCount === 1;
  }
}

function toDeviceCommand(doc: CommandDoc): DeviceCommand {
  const command: DeviceCommand = { v: 1, id: doc.id, name: doc.name, expiresAt: doc.expiresAt.getTime() };
  if (doc.params !== undefined) command.params = doc.params;
  return command;
}
