// The TLS a device speaks, as Moddable SDK 8.2.3's TLS client (modules/crypt/ssl) offers it in its
// ClientHello: TLS 1.2 only, these cipher suites, curve secp256r1 only, ECDSA and RSA signatures with
// SHA-256. As a client it can sign only with an RSA key (PKCS#8, PKCS#1 v1.5): its PKCS#8 parser throws
// on an EC key. The gateway must accept what it offers; the simulator's TLS offers exactly this. Its own
// entry point (@kestrel/wire/device-tls), so the firmware image, which preloads @kestrel/wire, does not carry it.

export interface DeviceCipherSuite {
  /** The IANA code point. */
  id: number;
  /** OpenSSL's name for it (what node:tls and openssl s_client take). */
  openssl: string;
  /** Key exchange with forward secrecy (ECDHE or DHE); the gateway refuses plain RSA key exchange. */
  forwardSecret: boolean;
  /** Offered only while the device build's `tls.ECDHE_RSA` (or `tls.DHE_RSA`) config is on (the default). */
  needs?: "ECDHE_RSA" | "DHE_RSA";
}

export const DEVICE_TLS = Object.freeze({
  version: "TLSv1.2",
  cipherSuites: Object.freeze<readonly DeviceCipherSuite[]>([
    { id: 0x002f, openssl: "AES128-SHA", forwardSecret: false },
    { id: 0x0035, openssl: "AES256-SHA", forwardSecret: false },
    { id: 0x003c, openssl: "AES128-SHA256", forwardSecret: false },
    { id: 0x003d, openssl: "AES256-SHA256", forwardSecret: false },
    { id: 0x0067, openssl: "DHE-RSA-AES128-SHA256", forwardSecret: true, needs: "DHE_RSA" },
    { id: 0x006b, openssl: "DHE-RSA-AES256-SHA256", forwardSecret: true, needs: "DHE_RSA" },
    { id: 0x009e, openssl: "DHE-RSA-AES128-GCM-SHA256", forwardSecret: true, needs: "DHE_RSA" },
    { id: 0xc027, openssl: "ECDHE-RSA-AES128-SHA256", forwardSecret: true, needs: "ECDHE_RSA" },
    { id: 0xc02f, openssl: "ECDHE-RSA-AES128-GCM-SHA256", forwardSecret: true, needs: "ECDHE_RSA" },
    { id: 0xc02b, openssl: "ECDHE-ECDSA-AES128-GCM-SHA256", forwardSecret: true, needs: "ECDHE_RSA" },
  ]),
  /** Named groups (supported_groups): secp256r1 only. */
  groups: Object.freeze(["P-256"] as const),
  /** signature_algorithms, as OpenSSL names them. */
  signatureAlgorithms: Object.freeze(["ECDSA+SHA256", "RSA+SHA256"] as const),
  /** The client key types a device can sign with. */
  clientKeyTypes: Object.freeze(["rsa"] as const),
});
