// The device table: one row per device, rebuilt on every refresh, keeping the
// selected row marked. Rows open the device's chart by click or Enter.

import type { DeviceView } from "../../src/devices/device-view.ts";
import { ago, pressure, temperature } from "./format.ts";

export class DeviceTable {
  private selected: string | undefined;

  constructor(
    private readonly body: HTMLTableSectionElement,
    private readonly empty: HTMLElement,
    private readonly onSelect: (deviceId: string) => void,
  ) {
    body.addEventListener("click", (event) => this.pick(event.target));
    body.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.pick(event.target);
    });
  }

  select(deviceId: string | undefined): void {
    this.selected = deviceId;
    for (const row of this.body.rows) {
      row.setAttribute("aria-selected", String(row.dataset.deviceId === deviceId));
    }
  }

  render(devices: DeviceView[], now: number): void {
    this.empty.hidden = devices.length > 0;
    this.body.replaceChildren(...devices.map((device) => this.row(device, now)));
  }

  private pick(target: EventTarget | null): void {
    const row = target instanceof Element ? target.closest<HTMLTableRowElement>("tr[data-device-id]") : null;
    const deviceId = row?.dataset.deviceId;
    if (!deviceId) return;
    this.select(deviceId);
    this.onSelect(deviceId);
  }

  private row(device: DeviceView, now: number): HTMLTableRowElement {
    const row = document.createElement("tr");
    row.dataset.testid = "device-row";
    row.dataset.deviceId = device.deviceId;
    row.tabIndex = 0;
    row.setAttribute("aria-selected", String(device.deviceId === this.selected));
    const badge = document.createElement("span");
    badge.className = device.online ? "badge online" : "badge";
    badge.textContent = device.online ? "online" : "offline";
    const m = device.latest?.m;
    row.append(
      cell(device.name === device.deviceId ? device.deviceId : `${device.name} (${device.deviceId})`),
      cell(badge),
      cell(ago(device.lastSeen, now)),
      cell(device.fw ?? "–"),
      cell(device.mode === "safe" ? `${device.reset ?? "–"}, safe mode` : (device.reset ?? "–")),
      cell(temperature(m?.temperature), "num"),
      cell(pressure(m?.pressure), "num"),
    );
    return row;
  }
}

function cell(content: string | Node, className?: string): HTMLTableCellElement {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.append(content);
  return td;
}
