// Moddable's MQTT 3.1.1 client (modules/network/mqtt). The SDK ships no typings for it, so the
// esp32 section of our manifest maps this file for device builds too. It does not reconnect, and
// it sends QoS 1 PUBLISH packets but does not report their PUBACK to the application.

declare module "mqtt" {
  export type MqttQuality = 0 | 1 | 2;

  export interface MqttWill {
    topic: string;
    message: string | ArrayBuffer;
    retain?: boolean;
    quality?: MqttQuality;
  }

  export interface MqttClientOptions {
    host: string;
    /** Defaults to 1883 (80 with a WebSocket path). */
    port?: number;
    /** Client identifier. */
    id?: string;
    user?: string;
    password?: string | ArrayBuffer;
    will?: MqttWill;
    /** Keep-alive interval in milliseconds; 0 disables keep-alive. */
    timeout?: number;
    /** Connects over WebSocket on this path when present. */
    path?: string;
    /** The socket class, e.g. securesocket's for MQTT over TLS; a plain TCP socket when absent. */
    Socket?: new (
      dict: Record<string, unknown>,
    ) => object;
    /** TLS options handed to Socket: certificate (CA, DER), clientCertificates, clientKey, protocolVersion. */
    secure?: Record<string, unknown>;
  }

  export interface MqttPublishOptions {
    retain?: boolean;
    quality?: MqttQuality;
    duplicate?: boolean;
  }

  export default class Client {
    constructor(options: MqttClientOptions);
    /** The socket connected; CONNECT is being sent. */
    onConnected?: () => void;
    /** CONNACK accepted: publish and subscribe may be used. */
    onReady?: () => void;
    onMessage?: (topic: string, data: ArrayBuffer) => void;
    /** The connection failed or was lost; the client is closed and must be replaced. */
    onClose?: () => void;
    /** Throws "connection closed" before onReady or after onClose. */
    publish(topic: string, data: string | ArrayBuffer, options?: MqttPublishOptions): void;
    subscribe(topic: string): void;
    unsubscribe(topic: string): void;
    /** Sends DISCONNECT unless immediate, then closes the socket; onClose is not called. */
    close(immediate?: boolean): void;
  }
}
