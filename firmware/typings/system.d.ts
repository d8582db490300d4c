// Moddable's `system` module (modules/io/system), which the esp32 IO manifest maps and preloads. It
// has no exports: it sets the global `System` (and `device`), which the SDK types in typings/global.d.ts
// (see typings/system-global.d.ts for our build). The firmware imports it for that side effect only;
// `import System from "system"` fails to link on a device ("import default not found").

declare module "system" {}
