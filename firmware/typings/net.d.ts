// Moddable's `net` module (modules/network/net): the state of the network connection. A strict subset
// of the SDK's typings/net.d.ts.

declare module "net" {
  const Net: {
    /** The Wi-Fi signal of the access point the station is associated with, dBm (undefined when it is not). */
    get(what: "RSSI"): number;
  };

  export { Net as default };
}
