// Simulated Moddable `ecp` module (modules/crypt/arith/ecp.js): a curve point holding BigInt
// coordinates, as the SDK's.

export default class ECPoint {
  x: bigint;
  y: bigint;
  z: bigint;

  constructor(x: bigint, y: bigint, identity = false) {
    this.x = x;
    this.y = y;
    this.z = identity ? 0n : 1n;
  }

  get X(): bigint {
    return this.x;
  }

  set X(x: bigint) {
    this.x = x;
  }

  get Y(): bigint {
    return this.y;
  }

  set Y(y: bigint) {
    this.y = y;
  }

  isZero(): boolean {
    return this.z === 0n;
  }

  toString(): string {
    return this.isZero() ? "0" : `${this.x},${this.y},${this.z}`;
  }

  static serialize(point: ECPoint): string {
    return point.toString();
  }

  static parse(text: string): ECPoint | undefined {
    const parts = text.split(",");
    if (parts.length !== 3) return undefined;
    return new ECPoint(BigInt(parts[0] as string), BigInt(parts[1] as string), parts[2] === "0");
  }

  static fromOctetString(octets: Uint8Array): ECPoint {
    if (octets[0] !== 0x04) throw new Error("unsupported format");
    const length = (octets.length - 1) >> 1;
    let x = 0n;
    let y = 0n;
    for (let i = 0; i < length; i++) {
      x = (x << 8n) | BigInt(octets[1 + i] as number);
      y = (y << 8n) | BigInt(octets[1 + length + i] as number);
    }
    return new ECPoint(x, y);
  }
}
Object.freeze(ECPoint.prototype);
