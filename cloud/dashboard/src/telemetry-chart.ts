// The telemetry chart: temperature (°C, left axis) and pressure (hPa, right
// axis) of one device over the last hour, drawn by ApexCharts. Only the line
// chart and the legend are bundled, not the whole library.

import ApexCharts from "apexcharts/core";
import "apexcharts/line";
import "apexcharts/features/legend";
import type { HistoryAnswer } from "../../src/telemetry/history-schema.ts";

const TEMPERATURE = "Temperature (°C)";
const PRESSURE = "Pressure (hPa)";

type Point = [number, number];

/** Chart points from either answer shape: raw samples, or the averages of downsampled buckets. */
export function toPoints(answer: HistoryAnswer): { temperature: Point[]; pressure: Point[] } {
  const temperature: Point[] = [];
  const pressure: Point[] = [];
  if (answer.resolution === "raw") {
    for (const { ts, m } of answer.samples) {
      if (m.temperature !== undefined) temperature.push([ts, m.temperature]);
      if (m.pressure !== undefined) pressure.push([ts, m.pressure / 100]);
    }
  } else {
    for (const { ts, avg } of answer.series.temperature ?? []) temperature.push([ts, avg]);
    for (const { ts, avg } of answer.series.pressure ?? []) pressure.push([ts, avg / 100]);
  }
  return { temperature, pressure };
}

export class TelemetryChart {
  private readonly chart: ApexCharts;
  private readonly rendered: Promise<ApexCharts>;

  constructor(element: HTMLElement) {
    this.chart = new ApexCharts(element, {
      chart: {
        type: "line",
        height: 360,
        animations: { enabled: false },
        toolbar: { show: false },
        zoom: { enabled: false },
      },
      series: [
        { name: TEMPERATURE, data: [] },
        { name: PRESSURE, data: [] },
      ],
      stroke: { width: 2, curve: "straight" },
      markers: { size: 0 },
      xaxis: { type: "datetime", labels: { datetimeUTC: false } },
      yaxis: [
        { seriesName: TEMPERATURE, title: { text: "°C" }, decimalsInFloat: 2 },
        { seriesName: PRESSURE, opposite: true, title: { text: "hPa" }, decimalsInFloat: 1 },
      ],
      tooltip: { x: { format: "HH:mm:ss" } },
      legend: { show: true, showForSingleSeries: true },
      noData: { text: "No readings in the last hour" },
    });
    this.rendered = this.chart.render();
  }

  async show(answer: HistoryAnswer): Promise<void> {
    await this.rendered;
    const points = toPoints(answer);
    await this.chart.updateSeries(
      [
        { name: TEMPERATURE, data: points.temperature },
        { name: PRESSURE, data: points.pressure },
      ],
      false,
    );
  }

  destroy(): void {
    this.chart.destroy();
  }
}
