// A small certificate authority driven by the openssl CLI: the local platform keeps one in its data
// directory for the gateway's TLS listener and the devices' client certificates; tests make throwaway ones.

import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";

/**
 * The certificate's key: EC P-256, or RSA 2048. Moddable's TLS client (the devices) can sign with an
 * RSA key only (PKCS#8 RSA, PKCS#1 v1.5 signatures): client certificates are RSA unless asked otherwise.
 * A server is served with both, so an ECDHE-ECDSA and an ECDHE-RSA suite both match.
 */
export type KeyType = "ec" | "rsa";

/** A server certificate names the hosts it serves (IP addresses or DNS names); a client certificate's CN is the device id. */
export type CertificateProfile =
  | { kind: "server"; hosts: readonly string[]; key?: KeyType }
  | { kind: "client"; key?: KeyType };

function keyTypeOf(profile: CertificateProfile): KeyType {
  return profile.key ?? (profile.kind === "client" ? "rsa" : "ec");
}

const NEW_KEY: Readonly<Record<KeyType, readonly string[]>> = Object.freeze({
  ec: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
  rsa: ["-newkey", "rsa:2048"],
});

/** Days from now, or an explicit window (e.g. one that already ended, to test expiry). */
export type Validity = { days: number } | { notBefore: Date; notAfter: Date };

export interface IssuedCertificate {
  key: string;
  cert: string;
  /** The certificate followed by the CA's: servers send the full chain, as a device's securesocket needs. */
  chain: string;
  keyPath: string;
  certPath: string;
  chainPath: string;
}

const IP_ADDRESS = /^(\d{1,3}\.){3}\d{1,3}$|:/;
const DAY_MS = 86_400_000;

function openssl(cwd: string, args: string[]): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** openssl ca wants YYYYMMDDHHMMSSZ. */
function opensslTime(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, "").slice(0, 14)}Z`;
}

function extensions(profile: CertificateProfile): string {
  if (profile.kind === "client") return "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n";
  const names = profile.hosts.map((host) => (IP_ADDRESS.test(host) ? `IP:${host}` : `DNS:${host}`));
  return `basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=${names.join(",")}\n`;
}

// `openssl ca` rather than `openssl x509 -req`: OpenSSL 3.0's x509 cannot set a start date in the past.
const CA_CONFIG = `[ca]
default_ca = local
[local]
dir = .
database = index.txt
new_certs_dir = newcerts
rand_serial = yes
default_md = sha256
policy = any_name
unique_subject = no
email_in_dn = no
[any_name]
commonName = supplied
`;

/** The gateway's MQTT_TLS_CERT and MQTT_TLS_KEY for these server certificates: lists separated like PATH, paired. */
export function tlsListenerEnv(servers: readonly IssuedCertificate[]): { MQTT_TLS_CERT: string; MQTT_TLS_KEY: string } {
  return {
    MQTT_TLS_CERT: servers.map((server) => server.chainPath).join(delimiter),
    MQTT_TLS_KEY: servers.map((server) => server.keyPath).join(delimiter),
  };
}

export class CertificateAuthority {
  readonly certificatePath: string;
  readonly keyPath: string;

  private constructor(
    readonly dir: string,
    readonly certificate: string,
  ) {
    this.certificatePath = join(dir, "ca.pem");
    this.keyPath = join(dir, "ca.key");
  }

  /** A new self-signed P-256 CA in dir (created if needed), valid for the given days. */
  static create(dir: string, commonName: string, days: number): CertificateAuthority {
    mkdirSync(join(dir, "newcerts"), { recursive: true });
    mkdirSync(join(dir, "issued"), { recursive: true });
    writeFileSync(join(dir, "openssl.cnf"), CA_CONFIG);
    writeFileSync(join(dir, "index.txt"), "");
    openssl(dir, [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      String(days),
      "-subj",
      `/CN=${commonName}`,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    return new CertificateAuthority(dir, readFileSync(join(dir, "ca.pem"), "utf8"));
  }

  /** The CA already in dir, or a new one: a local installation keeps its CA across runs. */
  static openOrCreate(dir: string, commonName: string, days: number): CertificateAuthority {
    const pem = join(dir, "ca.pem");
    if (existsSync(pem) && existsSync(join(dir, "ca.key")))
      return new CertificateAuthority(dir, readFileSync(pem, "utf8"));
    return CertificateAuthority.create(dir, commonName, days);
  }

  /**
   * The certificate issued earlier under this name when this CA signed it for the same profile and it
   * is valid for at least another day; otherwise a new one.
   */
  reuseOrIssue(commonName: string, profile: CertificateProfile, days: number): IssuedCertificate {
    const earlier = this.issued(commonName);
    if (earlier && readFileSync(join(this.dir, "issued", `${commonName}.ext`), "utf8") === extensions(profile)) {
      const x509 = new X509Certificate(earlier.cert);
      const ca = new X509Certificate(this.certificate);
      if (
        x509.checkIssued(ca) &&
        x509.verify(ca.publicKey) &&
        x509.publicKey.asymmetricKeyType === keyTypeOf(profile) &&
        Date.parse(x509.validTo) > Date.now() + DAY_MS
      )
        return earlier;
    }
    return this.issue(commonName, profile, { days });
  }

  /** Issues a certificate with a fresh key (see KeyType); its files are issued/<commonName>.{key,pem,chain.pem}. */
  issue(commonName: string, profile: CertificateProfile, validity: Validity = { days: 2 }): IssuedCertificate {
    const base = join("issued", commonName);
    openssl(this.dir, [
      "req",
      ...NEW_KEY[keyTypeOf(profile)],
      "-nodes",
      "-subj",
      `/CN=${commonName}`,
      "-keyout",
      `${base}.key`,
      "-out",
      `${base}.csr`,
    ]);
    writeFileSync(join(this.dir, `${base}.ext`), extensions(profile));
    const window =
      "days" in validity
        ? ["-days", String(validity.days)]
        : ["-startdate", opensslTime(validity.notBefore), "-enddate", opensslTime(validity.notAfter)];
    openssl(this.dir, [
      "ca",
      "-batch",
      "-notext",
      "-config",
      "openssl.cnf",
      "-cert",
      "ca.pem",
      "-keyfile",
      "ca.key",
      "-in",
      `${base}.csr`,
      "-out",
      `${base}.pem`,
      "-extfile",
      `${base}.ext`,
      ...window,
    ]);
    const cert = readFileSync(join(this.dir, `${base}.pem`), "utf8");
    writeFileSync(join(this.dir, `${base}.chain.pem`), cert + this.certificate);
    const issued = this.issued(commonName);
    if (!issued) throw new Error(`openssl did not write ${base}.pem`);
    return issued;
  }

  /** An ECDSA and an RSA server certificate for hosts (`<commonName>` and `<commonName>-rsa`), served side by side. */
  issueServerPair(commonName: string, hosts: readonly string[], validity?: Validity): IssuedCertificate[] {
    return [
      this.issue(commonName, { kind: "server", hosts, key: "ec" }, validity),
      this.issue(`${commonName}-rsa`, { kind: "server", hosts, key: "rsa" }, validity),
    ];
  }

  private issued(commonName: string): IssuedCertificate | undefined {
    const base = join(this.dir, "issued", commonName);
    const paths = { keyPath: `${base}.key`, certPath: `${base}.pem`, chainPath: `${base}.chain.pem` };
    if (!Object.values(paths).every((path) => existsSync(path))) return undefined;
    return {
      key: readFileSync(paths.keyPath, "utf8"),
      cert: readFileSync(paths.certPath, "utf8"),
      chain: readFileSync(paths.chainPath, "utf8"),
      ...paths,
    };
  }
}
