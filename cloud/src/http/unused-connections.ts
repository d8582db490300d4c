// Lets the server close promptly: a connection a client opened but never sent a
// byte on (HTTP clients pre-connect, or abort a request before writing it) is
// neither idle nor busy to Node, so server.close() would wait for headersTimeout.

import type { Socket } from "node:net";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

async function unusedConnections(app: FastifyInstance): Promise<void> {
  const sockets = new Set<Socket>();
  app.server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  app.addHook("preClose", async () => {
    for (const socket of sockets) if (socket.bytesRead === 0) socket.destroy();
  });
}

export const unusedConnectionsPlugin = fp(unusedConnections, { name: "unused-connections" });
