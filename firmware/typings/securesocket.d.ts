// Moddable's TLS socket (modules/crypt/securesocket), handed to the mqtt Client as its Socket. A
// strict subset of the SDK's typings/securesocket.d.ts: the firmware only passes the class along.

declare module "securesocket" {
  export default class SecureSocket {
    constructor(dict: Record<string, unknown>);
    close(): void;
  }
}
