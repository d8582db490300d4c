// Moddable's `ecp` module (modules/crypt/arith/ecp.js): a point on an elliptic curve. The SDK ships
// no typing for it.

declare module "ecp" {
  class ECPoint {
    constructor(x: bigint, y: bigint, identity?: boolean);
    get X(): bigint;
    get Y(): bigint;
    isZero(): boolean;
  }

  export { ECPoint as default };
}
