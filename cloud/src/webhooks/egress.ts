// Where webhooks (partner endpoints and scheduled exports alike) may go: http(s) to public addresses,
// and to loopback, private, link-local or other internal ranges only when WEBHOOK_ALLOWED_NETWORKS
// lists them. Checked when an endpoint or schedule is saved (IP literals and localhost names) and
// again for every address DNS gives at delivery, so a name that resolves inward later is refused too.

import { lookup as dnsLookup } from "node:dns";
import { BlockList, isIP, type LookupFunction } from "node:net";

// Not the public internet: "this" network, RFC 1918, carrier-grade NAT, loopback, link-local,
// IETF protocol assignments, benchmarking, multicast and reserved; IPv6 likewise.
const INTERNAL_V4: Array<[string, number]> = [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
];
const INTERNAL_V6: Array<[string, number]> = [
  ["::", 127],
  ["::ffff:0:0", 96],
  ["64:ff9b:1::", 48],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
];
const LOCAL_NAMES = /(^|\.)localhost\.?$/i;
// An IPv4 address written as IPv6 (::ffff:a.b.c.d) is checked as the IPv4 address it is.
const MAPPED_V4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

export class WebhookRefused extends Error {
  readonly code = "webhook_address_refused";
}

function blockList(entries: Array<[string, number]>, family: "ipv4" | "ipv6"): BlockList {
  const list = new BlockList();
  for (const [network, prefix] of entries) list.addSubnet(network, prefix, family);
  return list;
}

export class WebhookEgress {
  private readonly internal = blockList(INTERNAL_V4, "ipv4");
  private readonly internalV6 = blockList(INTERNAL_V6, "ipv6");
  private readonly allowed = new BlockList();

  /** @param allowedNetworks CIDRs that may be reached although internal, e.g. `127.0.0.0/8` for tests. */
  constructor(allowedNetworks: readonly string[] = []) {
    for (const cidr of allowedNetworks) {
      const [network = "", prefix = ""] = cidr.split("/");
      this.allowed.addSubnet(network, Number(prefix), isIP(network) === 6 ? "ipv6" : "ipv4");
    }
  }

  /** Why a connection to this IP address is refused, or undefined when it may go. */
  addressProblem(raw: string): string | undefined {
    const address = MAPPED_V4.exec(raw)?.[1] ?? raw;
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (this.allowed.check(address, family)) return undefined;
    const internal = family === "ipv6" ? this.internalV6.check(address, "ipv6") : this.internal.check(address, "ipv4");
    return internal
      ? "the webhook address is in a loopback, private or link-local network (not in WEBHOOK_ALLOWED_NETWORKS)"
      : undefined;
  }

  /**
   * Why this is not a URL a webhook may have, or undefined: http(s), no user info, not internal as
   * written. `field` names it in the answer (the body property it came from).
   */
  urlProblem(raw: string, field = "url"): string | undefined {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return `${field} is not a URL`;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return `${field} must be http or https`;
    // A secret there would be shown in every listing and log.
    if (url.username !== "" || url.password !== "") return `${field} must not hold a user name or password`;
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) !== 0) return this.addressProblem(host);
    return LOCAL_NAMES.test(host) ? this.addressProblem("127.0.0.1") : undefined;
  }

  /** A `lookup` for http.request that refuses a name resolving to a refused address. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, "", 4);
      const refused = addresses.map((entry) => this.addressProblem(entry.address)).find(Boolean);
      if (refused !== undefined) return callback(new WebhookRefused(refused), "", 4);
      if (options.all) return (callback as unknown as (e: null, all: typeof addresses) => void)(null, addresses);
      const [first] = addresses;
      if (!first) return callback(new WebhookRefused("the webhook host has no address"), "", 4);
      callback(null, first.address, first.family);
    });
  };
}
