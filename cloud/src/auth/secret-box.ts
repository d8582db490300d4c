// Seals secrets the cloud must read back (webhook signing secrets) with AES-256-GCM, so a database
// dump alone reveals none. The key is SECRETS_KEY, or on a laptop one generated once under DATA_DIR.

import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const FORMAT = "v1";
const DEV_KEY_FILE = "secrets.key";

export class SecretBoxError extends Error {
  readonly code = "secret_unreadable";
}

/** The key in DATA_DIR/secrets.key, made on first use; exclusive create, so two processes agree on one. */
async function devKey(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, DEV_KEY_FILE);
  await mkdir(dataDir, { recursive: true });
  try {
    await writeFile(path, randomBytes(KEY_BYTES).toString("base64"), { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const key = Buffer.from((await readFile(path, "utf8")).trim(), "base64");
  if (key.length !== KEY_BYTES) throw new SecretBoxError(`${path} does not hold a 32-byte base64 key`);
  return key;
}

export class SecretBox {
  /** Names the key in every sealed value, so a value sealed under another key fails with a clear reason. */
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== KEY_BYTES) throw new SecretBoxError("a secret box needs a 32-byte key");
    this.keyId = createHash("sha256").update(key).digest("hex").slice(0, 8);
  }

  static async open(key: Buffer | undefined, dataDir: string): Promise<SecretBox> {
    return new SecretBox(key ?? (await devKey(dataDir)));
  }

  /** `v1.<keyId>.<iv>.<ciphertext>.<tag>`, base64url parts. */
  seal(plaintext: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const sealed = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [FORMAT, this.keyId, iv, sealed, cipher.getAuthTag()]
      .map((part) => (typeof part === "string" ? part : part.toString("base64url")))
      .join(".");
  }

  open(sealed: string): string {
    const [format, keyId, iv, data, tag] = sealed.split(".");
    if (format !== FORMAT || iv === undefined || data === undefined || tag === undefined) {
      throw new SecretBoxError("not a sealed secret");
    }
    if (keyId !== this.keyId) {
      throw new SecretBoxError(`sealed under another key (${keyId}); replicas must share SECRETS_KEY`);
    }
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    try {
      return Buffer.concat([decipher.update(Buffer.from(data, "base64url")), decipher.final()]).toString("utf8");
    } catch {
      throw new SecretBoxError("sealed secret was altered");
    }
  }
}
