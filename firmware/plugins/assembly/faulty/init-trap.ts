// Faulty on purpose (tests): traps in init, as a broken upgrade would; the device keeps the version before.

// The SDK is imported for its abort handler, which keeps the module's imports within the host API.
import "../sdk/kestrel";

export function init(): i32 {
  unreachable();
  return 0;
}

export function on_sample(): void {}
