// Moddable's `curve` module (modules/crypt/etc/curve.js): the named curves' parameters ("secp256r1",
// "secp384r1"). The SDK ships no typing for it.

declare module "curve" {
  import type ECPoint from "ecp";

  class Curve {
    constructor(name: "secp256r1" | "secp384r1");
    readonly G: ECPoint;
    readonly n: bigint;
    get orderSize(): number;
  }

  export { Curve as default };
}
