// Threshold events: alarm (1 or 0) on every sample, raised when temperature goes above `high` and
// cleared once it is back below `high - hysteresis` (config, default 30 and 0.5 °C), so a reading
// that hovers at the threshold does not flap. Each change is logged once, as a warning.

import { config, Level, log, Metric, Sensor } from "../sdk/kestrel";

let temperature!: Sensor;
let alarm!: Metric;
let high: f64 = 30;
let hysteresis: f64 = 0.5;
let raised = false;

export function init(): i32 {
  temperature = new Sensor("temperature");
  alarm = new Metric("alarm");
  high = config("high", 30);
  hysteresis = config("hysteresis", 0.5);
  return temperature.present && alarm.declared && hysteresis >= 0 ? 0 : 1;
}

export function on_sample(): void {
  const t = temperature.value;
  if (isNaN(t)) return;
  if (!raised && t > high) {
    raised = true;
    log(Level.Warn, "temperature above " + high.toString());
  } else if (raised && t < high - hysteresis) {
    raised = false;
    log(Level.Info, "temperature back below " + (high - hysteresis).toString());
  }
  alarm.emit(raised ? 1 : 0);
}
