// Moddable's `ecdsa` module (modules/crypt/etc/ecdsa.js): verify(H, sig) checks a signature over the
// digest H; sig is r || s (each orderSize bytes), or DER with asn1. The SDK ships no typing for it.

declare module "ecdsa" {
  import type Curve from "curve";
  import type ECPoint from "ecp";

  class ECDSA {
    /** key: the public point to verify with (or the private scalar to sign with). */
    constructor(key: ECPoint | bigint, curve: Curve, priv?: boolean);
    sign(H: ArrayBuffer, asn1?: boolean): ArrayBuffer;
    verify(H: ArrayBuffer, sig: ArrayBuffer, asn1?: boolean): boolean;
  }

  export { ECDSA as default };
}
