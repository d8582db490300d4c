// Simulated Moddable `curve` module (modules/crypt/etc/curve.js): the named curves' generator and
// order. Diffie-Hellman (dh) is not simulated: the firmware only verifies signatures.

import ECPoint from "ecp";

const CURVES: Readonly<Record<string, { gx: bigint; gy: bigint; n: bigint }>> = Object.freeze({
  secp256r1: {
    gx: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
    gy: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
    n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  },
  secp384r1: {
    gx: 0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7n,
    gy: 0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5fn,
    n: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  },
});

export default class Curve {
  readonly name: string;
  readonly G: ECPoint;
  readonly n: bigint;

  constructor(name: string) {
    const curve = CURVES[name];
    if (!curve) throw new Error(`curve ${name} is not simulated`);
    this.name = name;
    this.G = new ECPoint(curve.gx, curve.gy);
    this.n = curve.n;
  }

  get orderSize(): number {
    return (this.n.toString(16).length * 4 + 7) >>> 3;
  }

  dh(): ArrayBuffer {
    throw new Error("curve.dh is not simulated");
  }

  Z(P: ArrayBuffer): ArrayBuffer {
    return P.slice(1, this.orderSize + 1);
  }
}
