// Smoothing: the moving average of the last `window` temperature readings (config, 1..32, default
// 5), emitted as temperature_avg. Readings the sensor missed are skipped, not averaged as zero.

import { config, Metric, Sensor } from "../sdk/kestrel";

const MAX_WINDOW = 32;

let temperature!: Sensor;
let average!: Metric;
let window = 5;
const readings = new StaticArray<f64>(MAX_WINDOW);
let count = 0;
let next = 0;
let sum: f64 = 0;

export function init(): i32 {
  temperature = new Sensor("temperature");
  average = new Metric("temperature_avg");
  window = <i32>config("window", 5);
  if (window < 1 || window > MAX_WINDOW || !temperature.present || !average.declared) return 1;
  return 0;
}

export function on_sample(): void {
  const value = temperature.value;
  if (isNaN(value)) return;
  if (count === window) sum -= unchecked(readings[next]);
  else count++;
  unchecked((readings[next] = value));
  sum += value;
  next = (next + 1) % window;
  average.emit(sum / count);
}
