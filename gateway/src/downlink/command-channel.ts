// The gateway's side of the cloud's command API: a long poll that hands over the
// commands for the devices connected here, and the route that takes devices' acks.

import { type CommandAck, type DeviceCommand, validateDeviceCommand } from "@kestrel/wire";
import { CloudError } from "../uplink/cloud-client.ts";

export interface CommandChannelOptions {
  baseUrl: string;
  gatewayKey: string;
  timeoutMs: number;
}

export interface CommandForDevice {
  deviceId: string;
  command: DeviceCommand;
}

export interface AckFromDevice {
  deviceId: string;
  receivedAt: number;
  ack: CommandAck;
}

/**
 * What the gateway did with a command it was handed: published to the device's connection, not
 * published because the device was no longer connected, or published to a connection that closed
 * before the device acked it. The last two release the command in the cloud at once.
 */
export interface DeliveryReport {
  deviceId: string;
  receivedAt: number;
  delivery: { id: string; outcome: "published" | "not_connected" | "connection_lost" };
}

/** One item of the ordered stream the gateway relays to the cloud's command-acks route. */
export type RelayRecord = AckFromDevice | DeliveryReport;

export class CommandChannel {
  constructor(private readonly options: CommandChannelOptions) {}

  /**
   * Waits up to waitSeconds for commands to the given devices. A command the gateway cannot
   * use is skipped, not fatal: the cloud offers it again and it expires in the end.
   */
  async poll(
    deviceIds: string[],
    waitSeconds: number,
    signal: AbortSignal,
  ): Promise<{ commands: CommandForDevice[]; invalid: number }> {
    const body = await postGatewayApi(
      this.options,
      "/api/gateway/v1/commands/poll",
      { devices: deviceIds, wait: waitSeconds },
      AbortSignal.any([signal, AbortSignal.timeout(waitSeconds * 1000 + this.options.timeoutMs)]),
    );
    const items = isObject(body) && Array.isArray(body.commands) ? (body.commands as unknown[]) : undefined;
    if (!items) throw new CloudError("bad_response", "command poll answer has no commands", true);
    const commands: CommandForDevice[] = [];
    let invalid = 0;
    for (const item of items) {
      const command = isObject(item) ? validateDeviceCommand(item.command) : undefined;
      if (isObject(item) && typeof item.deviceId === "string" && command?.ok) {
        commands.push({ deviceId: item.deviceId, command: command.value });
      } else {
        invalid++;
      }
    }
    return { commands, invalid };
  }

  async sendAcks(acks: RelayRecord[]): Promise<void> {
    await postGatewayApi(
      this.options,
      "/api/gateway/v1/command-acks",
      { acks },
      AbortSignal.timeout(this.options.timeoutMs),
    );
  }
}

/**
 * POSTs JSON to the cloud's gateway API with the gateway key; the answer's JSON body, or a
 * CloudError saying whether trying again may help.
 */
export async function postGatewayApi(
  options: CommandChannelOptions,
  path: string,
  payload: unknown,
  signal: AbortSignal,
): Promise<unknown> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${options.baseUrl}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${options.gatewayKey}` },
      body: JSON.stringify(payload),
      signal,
    });
    text = await response.text();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new CloudError("cloud_unreachable", `cannot reach the cloud at ${options.baseUrl}: ${message}`, true);
  }
  let body: unknown;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (response.ok) return body;
  const code = isObject(body) && typeof body.code === "string" ? body.code : `http_${response.status}`;
  // 4xx other than 408/429 will not improve by retrying the same request.
  const retryable = response.status >= 500 || response.status === 408 || response.status === 429;
  throw new CloudError(code, `cloud answered ${response.status} to ${path}`, retryable, response.status);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
