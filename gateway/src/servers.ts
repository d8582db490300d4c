// Listening and closing node servers (MQTT over TCP and TLS, HTTP) as promises.

import type { Server as HttpServer } from "node:http";
import type { AddressInfo, Server as NetServer } from "node:net";
import type { Server as TlsServer } from "node:tls";

type AnyServer = NetServer | TlsServer | HttpServer;

/** Resolves with the port actually bound (port 0 picks a free one). */
export function listen(server: AnyServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export function close(server: AnyServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
