// Public entry of the cloud package: what the local runner and the
// end-to-end tests in tools/ use to run the cloud in-process.

export { type BuildAppOptions, buildApp } from "./app.ts";
export { nodeSha256 } from "./artifacts/validators.ts";
export { SecretBox } from "./auth/secret-box.ts";
export type { CommandStatus } from "./commands/command-store.ts";
export type { CommandList, CommandView } from "./commands/command-view.ts";
export { type CloudConfig, ConfigError, loadConfig } from "./config.ts";
export type { DeviceList, DeviceView } from "./devices/device-view.ts";
export type { LogList } from "./logs/plugin.ts";
export { createLogger } from "./observability/logger.ts";
export { SigningService } from "./signing/signing-service.ts";
export { connectDb, type Database } from "./storage/connect.ts";
export { DEFAULT_EMBEDDED_BACKEND, EMBEDDED_BACKENDS, type EmbeddedBackend } from "./storage/embedded-backend.ts";
export {
  type EmbeddedFerretDb,
  EmbeddedFerretDbError,
  type EmbeddedFerretDbOptions,
  startEmbeddedFerretDb,
} from "./storage/embedded-ferretdb.ts";
export { LATEST_LISTED_MAX } from "./telemetry/plugin.ts";
export { BootstrapError, type BootstrapOptions, bootstrap, type Credentials } from "./tenants/bootstrap.ts";
