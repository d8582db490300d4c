// Dew point from temperature (°C) and relative humidity (%), by the Magnus formula with the
// Sonntag (1990) constants (a = 17.62, b = 243.12 °C; within ±0.35 °C from -45 to 60 °C), emitted
// as dew_point in °C, or in °F when config fahrenheit is 1.

import { config, Metric, Sensor } from "../sdk/kestrel";

const A: f64 = 17.62;
const B: f64 = 243.12;

let temperature!: Sensor;
let humidity!: Sensor;
let dewPoint!: Metric;
let fahrenheit = false;

export function init(): i32 {
  temperature = new Sensor("temperature");
  humidity = new Sensor("humidity");
  dewPoint = new Metric("dew_point");
  fahrenheit = config("fahrenheit", 0) === 1;
  return temperature.present && humidity.present && dewPoint.declared ? 0 : 1;
}

export function on_sample(): void {
  const t = temperature.value;
  const rh = humidity.value;
  if (isNaN(t) || isNaN(rh) || rh <= 0 || rh > 100) return;
  const gamma = Math.log(rh / 100) + (A * t) / (B + t);
  const celsius = (B * gamma) / (A - gamma);
  dewPoint.emit(fahrenheit ? (celsius * 9) / 5 + 32 : celsius);
}
