// The keys this device trusts to sign artifacts: provisioned at build time (config `otaKeys`), then
// changed only by trust records signed by a key already trusted, applied once each in `seq` order
// and kept in preference. Signatures are checked by `kestrel/artifact-signature` (mbedTLS, the same
// check the plugins' packages get).

import { ARTIFACT_LIMITS, hexToBytes, parseTrustRecord, type SignedText } from "@kestrel/wire/artifacts";
import { sha256, verifyP256 } from "kestrel/artifact-signature";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import Preference from "preference";

const PREFERENCE_DOMAIN = "kestrel";
const TRUST_KEY = "trust";
/** Retired key ids remembered so a replayed old record cannot bring one back. */
const RETIRED_MAX = 8;

interface TrustedKey {
  id: string;
  /** Uncompressed point, hex. */
  key: string;
}

interface StoredTrust {
  seq: number;
  keys: TrustedKey[];
  retired: string[];
}

/** "keyId:04…,keyId:04…" as the build's config carries the organization's key. */
function parseProvisioned(text: string, log: Log): TrustedKey[] {
  const keys: TrustedKey[] = [];
  for (const entry of text.split(",")) {
    const [id = "", key = ""] = entry.trim().split(":");
    if (/^[0-9a-f]{16}$/.test(id) && /^04[0-9a-f]{128}$/.test(key)) keys.push({ id, key });
    else if (entry.trim() !== "") log.write("error", "otaKeys entry ignored: not keyId:04<x><y> in hex", {}, "ota");
  }
  return keys.slice(0, ARTIFACT_LIMITS.trustKeys);
}

export default class TrustStore {
  readonly #log: Log;
  #trust: StoredTrust;

  constructor(provisioned: string, log: Log) {
    this.#log = log;
    this.#trust = this.#load() ?? { seq: 0, keys: parseProvisioned(provisioned, log), retired: [] };
  }

  get keyIds(): string[] {
    return this.#trust.keys.map((key) => key.id);
  }

  has(keyId: string): boolean {
    return this.#trust.keys.some((key) => key.id === keyId);
  }

  /** True when keyId is trusted and signed exactly this text. */
  verify(signed: SignedText, keyId: string): boolean {
    const trusted = this.#trust.keys.find((key) => key.id === keyId);
    const signature = hexToBytes(signed.sig);
    const key = trusted && hexToBytes(trusted.key);
    if (!key || signature?.length !== 64) return false;
    try {
      return verifyP256(
        key.buffer as ArrayBuffer,
        sha256(ArrayBuffer.fromString(signed.text)),
        signature.buffer as ArrayBuffer,
      );
    } catch (error) {
      this.#log.write("warn", "signature check failed", { error: describeError(error) }, "ota");
      return false;
    }
  }

  /**
   * Applies the records not applied yet, in seq order, each only if a key trusted at that point
   * signed it. Returns how many were refused (a bad or foreign record changes nothing).
   */
  apply(records: readonly SignedText[]): number {
    let refused = 0;
    let changed = false;
    for (const signed of records) {
      const record = parseTrustRecord(signed.text);
      if (!record.ok) {
        refused++;
        continue;
      }
      const { seq, add, retire, keyId } = record.value;
      if (seq <= this.#trust.seq) continue;
      if (seq !== this.#trust.seq + 1 || !this.verify(signed, keyId)) {
        refused++;
        this.#log.write("warn", "trust record refused", { seq, signer: keyId, expected: this.#trust.seq + 1 }, "ota");
        continue;
      }
      const retired = [...this.#trust.retired, ...retire].slice(-RETIRED_MAX);
      const keys = this.#trust.keys
        .filter((key) => !retire.includes(key.id))
        .concat(add.filter((key) => !retired.includes(key.keyId)).map((key) => ({ id: key.keyId, key: key.publicKey })))
        .slice(-ARTIFACT_LIMITS.trustKeys);
      this.#trust = { seq, keys, retired };
      changed = true;
      this.#log.write("info", "trust record applied", { seq, added: add.length, retired: retire.join(" ") }, "ota");
    }
    if (changed) this.#save();
    return refused;
  }

  #load(): StoredTrust | undefined {
    try {
      const saved = Preference.get(PREFERENCE_DOMAIN, TRUST_KEY);
      if (typeof saved !== "string") return undefined;
      const trust = JSON.parse(saved) as StoredTrust;
      return Number.isInteger(trust.seq) && Array.isArray(trust.keys) ? trust : undefined;
    } catch (error) {
      this.#log.write(
        "error",
        "saved trust unreadable, using the provisioned keys",
        { error: describeError(error) },
        "ota",
      );
      return undefined;
    }
  }

  #save(): void {
    Preference.set(PREFERENCE_DOMAIN, TRUST_KEY, JSON.stringify(this.#trust));
  }
}
