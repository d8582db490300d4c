// The local certificate authority: certificates it issues chain to it, a backdated window is honoured
// (the expiry tests depend on it), and a local installation gets the same CA and certificates back.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { CertificateAuthority } from "../src/pki.ts";

const DAY_MS = 86_400_000;

describe("certificate authority", () => {
  const dir = mkdtempSync(join(tmpdir(), "kestrel-pki-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("a server certificate names its hosts, chains to the CA and carries the chain", () => {
    const ca = CertificateAuthority.create(join(dir, "a"), "test-ca", 2);
    const server = ca.issue("gw", { kind: "server", hosts: ["127.0.0.1", "localhost"] });
    const x509 = new X509Certificate(server.cert);
    assert.equal(x509.subjectAltName, "IP Address:127.0.0.1, DNS:localhost");
    assert.ok(x509.verify(new X509Certificate(ca.certificate).publicKey));
    assert.equal(server.chain, server.cert + ca.certificate);
  });

  test("a certificate can be issued for a window that already ended", () => {
    const ca = CertificateAuthority.create(join(dir, "b"), "test-ca", 2);
    const notAfter = new Date(Date.now() - DAY_MS);
    const stale = ca.issue("old", { kind: "client" }, { notBefore: new Date(Date.now() - 3 * DAY_MS), notAfter });
    const x509 = new X509Certificate(stale.cert);
    assert.ok(Date.parse(x509.validTo) < Date.now());
    // Certificates carry whole seconds: the issued end is the requested one, truncated.
    assert.equal(Date.parse(x509.validTo), Math.floor(notAfter.getTime() / 1000) * 1000);
  });

  test("an installation reuses its CA and valid certificates, and reissues what no longer fits", () => {
    const first = CertificateAuthority.openOrCreate(join(dir, "c"), "local-ca", 30);
    const server = first.reuseOrIssue("gw", { kind: "server", hosts: ["127.0.0.1"] }, 30);
    const again = CertificateAuthority.openOrCreate(join(dir, "c"), "local-ca", 30);
    assert.equal(again.certificate, first.certificate);
    assert.equal(again.reuseOrIssue("gw", { kind: "server", hosts: ["127.0.0.1"] }, 30).cert, server.cert);
    const renamed = again.reuseOrIssue("gw", { kind: "server", hosts: ["127.0.0.1", "localhost"] }, 30);
    assert.notEqual(renamed.cert, server.cert);
    again.issue("dev", { kind: "client" }, { notBefore: new Date(Date.now() - 3 * DAY_MS), notAfter: new Date() });
    const renewed = again.reuseOrIssue("dev", { kind: "client" }, 30);
    assert.ok(Date.parse(new X509Certificate(renewed.cert).validTo) > Date.now() + 29 * DAY_MS);
  });
});
