// Public entry of the gateway package: start it in-process (tests, local runner).
export { ConfigError, type GatewayConfig, loadGatewayConfig } from "./config.ts";
export { type Gateway, startGateway } from "./gateway.ts";
export { GatewayMetrics } from "./metrics.ts";
