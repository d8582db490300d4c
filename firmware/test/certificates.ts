// Test PKI made at test time with the openssl CLI: a CA, a server certificate for 127.0.0.1 (its
// chain sent in full, as securesocket needs), device client certificates, and an unrelated CA.

import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface TestPki {
  ca: string;
  /** Server key and certificate chain (leaf + CA). */
  serverKey: string;
  serverChain: string;
  /** A CA that signed none of the above. */
  otherCa: string;
  /** Issues another server certificate from ca with these extensions (e.g. another subjectAltName). */
  server(name: string, extensions: string): { key: string; chain: string };
  /** Issues a client certificate (CN = name) from ca, or from otherCa when untrusted. */
  client(name: string, options?: { untrusted?: boolean }): { cert: string; key: string };
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

function issue(dir: string, ca: string, name: string, extensions: string): void {
  openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
  ]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-days",
    "2",
    "-out",
    `${name}.pem`,
    "-extfile",
    `${name}.ext`,
  ]);
}

export function makePki(dir: string): TestPki {
  const read = (file: string): string => readFileSync(join(dir, file), "utf8");
  makeCa(dir, "kestrel-ca");
  makeCa(dir, "other-ca");
  issue(dir, "kestrel-ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  return {
    ca: read("kestrel-ca.pem"),
    otherCa: read("other-ca.pem"),
    serverKey: read("server.key"),
    serverChain: read("server.pem") + read("kestrel-ca.pem"),
    server(name, extensions) {
      issue(dir, "kestrel-ca", name, extensions);
      return { key: read(`${name}.key`), chain: read(`${name}.pem`) + read("kestrel-ca.pem") };
    },
    client(name, options = {}) {
      issue(dir, options.untrusted ? "other-ca" : "kestrel-ca", name, "extendedKeyUsage=clientAuth\n");
      return { cert: read(`${name}.pem`), key: read(`${name}.key`) };
    },
  };
}
