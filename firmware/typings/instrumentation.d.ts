// Moddable's `instrumentation` module (modules/base/instrumentation): the runtime's counters by name.
// A strict subset of the SDK's typings/instrumentation.d.ts. In a build without instrumentation
// (a plain release build, no -d or -i) map and get answer undefined.

declare module "instrumentation" {
  const Instrumentation: {
    /** The counter's index, or undefined when the build has no such counter. */
    map(name: "XS Slot Heap Used" | "XS Chunk Heap Used"): number | undefined;
    get(what: number | undefined): number | undefined;
  };

  export { Instrumentation as default };
}
