// The selected device's state as the firmware last reported it: one row per
// field, reset reason and safe mode included.

import type { DeviceView } from "../../src/devices/device-view.ts";
import { ago } from "./format.ts";

const RESET_REASONS: Record<string, string> = {
  "power-on": "power-on",
  watchdog: "watchdog (the firmware hung)",
  crash: "crash",
  ota: "firmware update",
  command: "reboot command",
  brownout: "brownout (supply voltage dropped)",
  unknown: "unknown",
};

const or = (value: number | string | null, unit = ""): string => (value === null ? "–" : `${value}${unit}`);

export class DeviceDetail {
  constructor(private readonly list: HTMLDListElement) {}

  render(device: DeviceView, now: number): void {
    const fields: Array<[key: string, label: string, value: string]> = [
      ["status", "Status", device.online ? "online" : "offline"],
      ["mode", "Mode", device.mode === "safe" ? "safe mode (boot loop detected)" : or(device.mode)],
      ["lastSeen", "Last seen", ago(device.lastSeen, now)],
      ["fw", "Firmware", or(device.fw)],
      ["boot", "Boot count", or(device.boot)],
      ["reset", "Last reset", device.reset === null ? "–" : (RESET_REASONS[device.reset] ?? device.reset)],
      ["uptime", "Uptime", or(device.uptime, " s")],
      ["heap", "Free heap", or(device.heap, " bytes")],
      ["rssi", "Wi-Fi signal", or(device.rssi, " dBm")],
      ["dropped", "Samples dropped", or(device.dropped)],
      ["tags", "Tags", device.tags.join(", ") || "–"],
      ["groups", "Groups", device.groups.join(", ") || "–"],
    ];
    this.list.replaceChildren(
      ...fields.flatMap(([key, label, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.dataset.field = key;
        dd.textContent = value;
        return [dt, dd];
      }),
    );
  }
}
