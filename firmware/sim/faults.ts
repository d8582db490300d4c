// Faults injected into one simulated device, from tests (SimDevice.faults) or the CLI. Hardware
// models consult the set (the I2C bus asks whether its lines are stuck or a device is unplugged),
// and the device wiring acts on power and clock faults. Randomness (which bit flips, where a write
// tears) comes from the device's seed, so a faulty run replays like a clean one.

/** sfc32, the generator the simulator uses wherever a run must replay from its seed. */
export function seededRandom(seed: number): () => number {
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed >>> 0;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) next();
  return next;
}

const LINK_DROP_AFTER_PUBLISH = "link-drop-after-publish";

/** What a power-loss fault counts writes of: the data partitions (flash) or the app partition (ota). */
export type WriteMedium = "flash" | "ota";

/** Names a device on a simulated bus for the fault set, e.g. "i2c:0x76". */
export function busTarget(bus: string, address: number): string {
  return `${bus}:0x${address.toString(16).padStart(2, "0")}`;
}

export class BusTimeoutError extends Error {
  constructor(bus: string) {
    super(`${bus} timeout: SDA held low`);
    this.name = "BusTimeoutError";
  }
}

export interface PowerLossOptions {
  /**
   * Cut the power in the middle of the n-th flash write from now (1: the next one), after a seeded
   * random prefix of its bytes reached the chip; without it, the power goes at once.
   */
  atFlashWrite?: number;
  /**
   * Cut the power in the middle of the n-th write to an app partition through the `ota` module from
   * now (an update being written), after a seeded random prefix of its bytes reached the chip.
   */
  atOtaWrite?: number;
  /** Virtual milliseconds the device stays off before it boots again (default 1000). */
  offMs?: number;
}

/**
 * The active faults of one device. Kinds: "disconnect" (a target does not acknowledge), "stuck" (a
 * bus times out every transaction), "corrupt" (reads from a target come back with bit flips),
 * "link-drop-after-publish" (target "mqtt", one-shot); a model added later may define its own.
 * Targets are strings chosen by the model that checks them.
 */
export class FaultSet {
  readonly random: () => number;
  readonly #active = new Map<string, number>();
  readonly #writesToPowerLoss: Record<WriteMedium, number> = { flash: 0, ota: 0 };
  #powerLossOffMs = 0;
  /** Artifact chunks counted since dropLinkAtChunk armed, and at which of them the link drops. */
  #chunksSeen = 0;
  readonly #linkDropsAtChunk = new Set<number>();
  /** How far the device's wall clock is off the simulator's, ms. */
  wallOffsetMs = 0;

  constructor(seed: number) {
    this.random = seededRandom(seed ^ 0x5eed);
  }

  /** Activates a fault; for "corrupt", `probability` is the chance a read is hit (1 unless given). */
  set(kind: string, target: string, probability = 1): void {
    this.#active.set(`${kind} ${target}`, probability);
  }

  clear(kind: string, target: string): void {
    this.#active.delete(`${kind} ${target}`);
  }

  has(kind: string, target: string): boolean {
    return this.#active.has(`${kind} ${target}`);
  }

  /** Flips one seeded random bit in bytes when a "corrupt" fault on target hits this read. */
  corrupt(target: string, bytes: Uint8Array): void {
    const probability = this.#active.get(`corrupt ${target}`);
    if (probability === undefined || bytes.length === 0 || this.random() >= probability) return;
    const bit = Math.floor(this.random() * bytes.length * 8);
    bytes[bit >> 3] = (bytes[bit >> 3] as number) ^ (1 << (bit & 7));
  }

  /**
   * Arms "link-drop-after-publish": the simulated mqtt client takes the firmware's next telemetry
   * publish, the Node side discards it instead of sending it, and the connection drops, as when a
   * link fails with the PUBLISH still in the device's TCP send buffer.
   */
  armLinkDropAfterPublish(): void {
    this.set(LINK_DROP_AFTER_PUBLISH, "mqtt");
  }

  /** Called for every telemetry publish: true (once) when this is the one to lose with the link. */
  takeLinkDropAfterPublish(): boolean {
    if (!this.has(LINK_DROP_AFTER_PUBLISH, "mqtt")) return false;
    this.clear(LINK_DROP_AFTER_PUBLISH, "mqtt");
    return true;
  }

  armPowerLoss(writes: number, offMs: number, medium: WriteMedium = "flash"): void {
    if (!Number.isInteger(writes) || writes < 1)
      throw new RangeError(`the write to fail at must be >= 1, got ${writes}`);
    this.#writesToPowerLoss[medium] = writes;
    this.#powerLossOffMs = offMs;
  }

  /** Called for every write to the medium: the power-off time when this write is the one to tear. */
  takePowerLoss(medium: WriteMedium = "flash"): number | undefined {
    if (this.#writesToPowerLoss[medium] === 0 || --this.#writesToPowerLoss[medium] > 0) return undefined;
    return this.#powerLossOffMs;
  }

  /** The link drops just before each of these artifact chunks from now (1: the next) would reach the device. */
  armLinkDropAtChunks(chunks: readonly number[]): void {
    for (const chunk of chunks)
      if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`chunks must be >= 1, got ${chunk}`);
    this.#chunksSeen = 0;
    this.#linkDropsAtChunk.clear();
    for (const chunk of chunks) this.#linkDropsAtChunk.add(chunk);
  }

  /** Called for every artifact chunk on its way to the device: true when the link drops on this one. */
  takeLinkDropAtChunk(): boolean {
    if (this.#linkDropsAtChunk.size === 0) return false;
    this.#chunksSeen++;
    return this.#linkDropsAtChunk.delete(this.#chunksSeen);
  }
}
