// Simulated Moddable `mqtt` Client: same constructor, callbacks and errors as modules/network/mqtt,
// bridged to a real MQTT connection the Node parent opens (mqtt.js) on the device's behalf.

import Resource from "Resource";
import host from "kestrel-sim:host";
import type { MqttClientOptions, MqttPublishOptions } from "mqtt";
import SecureSocket from "securesocket";

const CHANNEL = "mqtt";

const CONNECTING = 1;
const READY = 2;
const CLOSED = -1;

type Payload = { text: string } | { bytes: number[] };

function encode(data: string | ArrayBuffer): Payload {
  return typeof data === "string" ? { text: data } : { bytes: Array.from(new Uint8Array(data)) };
}

/** Certificates as DER bytes for the parent's real TLS socket; the simulator models securesocket only. */
function tlsOptions(options: MqttClientOptions): Record<string, unknown> {
  if (options.Socket !== SecureSocket) throw new Error("only securesocket is simulated as an mqtt Socket");
  const secure = options.secure ?? {};
  const der = (value: unknown, what: string): number[] => {
    if (!(value instanceof Resource)) throw new Error(`secure.${what} must be a Resource`);
    // The firmware's typing of Resource is the SDK's opaque one; the simulated class carries bytes.
    return (value as { bytes: number[] }).bytes;
  };
  const tls: Record<string, unknown> = {};
  if (secure.certificate !== undefined) tls.ca = der(secure.certificate, "certificate");
  const certificates = secure.clientCertificates;
  if (certificates !== undefined) {
    if (!Array.isArray(certificates) || certificates.length !== 1)
      throw new Error("secure.clientCertificates must hold one certificate");
    tls.cert = der(certificates[0], "clientCertificates[0]");
    tls.key = der(secure.clientKey, "clientKey");
  }
  return tls;
}

export default class Client {
  onConnected?: () => void;
  onReady?: () => void;
  onMessage?: (topic: string, data: ArrayBuffer) => void;
  onClose?: () => void;
  readonly #id: number;
  #state = CONNECTING;

  constructor(options: MqttClientOptions) {
    if (!options.host) throw new Error("parameter host is required");
    if (options.path) throw new Error("mqtt over WebSocket is not simulated");
    const will = options.will;
    const tls = options.Socket === undefined ? undefined : tlsOptions(options);
    this.#id = host.call("mqtt.open", {
      tls,
      host: options.host,
      port: options.port ?? 1883,
      id: options.id ?? "",
      user: options.user,
      password: options.password === undefined ? undefined : encode(options.password),
      will: will && {
        topic: will.topic,
        message: encode(will.message),
        retain: Boolean(will.retain),
        qos: will.quality ?? 0,
      },
      timeout: options.timeout ?? 0,
    }) as number;
    host.listen(CHANNEL, this.#id, (data) => this.#event(data));
  }

  publish(topic: string, data: string | ArrayBuffer, options?: MqttPublishOptions): void {
    this.#requireReady();
    host.call("mqtt.publish", {
      id: this.#id,
      topic,
      payload: encode(data),
      qos: options?.quality ?? 0,
      retain: Boolean(options?.retain),
    });
  }

  subscribe(topic: string): void {
    this.#requireReady();
    host.call("mqtt.subscribe", { id: this.#id, topic });
  }

  unsubscribe(topic: string): void {
    this.#requireReady();
    host.call("mqtt.unsubscribe", { id: this.#id, topic });
  }

  close(immediate?: boolean): void {
    if (this.#state === CLOSED) return;
    this.#state = CLOSED;
    host.unlisten(CHANNEL, this.#id);
    host.call("mqtt.close", { id: this.#id, immediate: Boolean(immediate) });
  }

  #requireReady(): void {
    if (this.#state < READY) throw new Error("connection closed");
  }

  #event(data: Record<string, unknown>): void {
    if (this.#state === CLOSED) return;
    switch (data.type) {
      case "connected":
        this.onConnected?.();
        break;
      case "ready":
        this.#state = READY;
        this.onReady?.();
        break;
      case "message": {
        const bytes = Uint8Array.from(data.bytes as number[]);
        this.onMessage?.(String(data.topic), bytes.buffer);
        break;
      }
      case "close":
        this.#state = CLOSED;
        host.unlisten(CHANNEL, this.#id);
        this.onClose?.();
        break;
    }
  }
}
