// The logger the simulator writes to: pino's object-first call shape, so a pino logger fits as is.

export interface SimLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug?(obj: object, msg?: string): void;
}

export const silentLogger: SimLogger = {
  info() {},
  warn() {},
  error() {},
};
