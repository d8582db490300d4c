// Simulated Moddable `securesocket`: a marker the simulated mqtt Client recognises as its Socket.
// The TLS session itself is a real one, opened by the Node parent with the certificates the
// firmware passes in `secure`.

export default class SecureSocket {
  constructor(_dict: Record<string, unknown>) {
    throw new Error("the simulator opens TLS sockets through the mqtt Client only");
  }

  close(): void {}
}
