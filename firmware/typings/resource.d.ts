// Moddable's `Resource`: read-only data built into the firmware image (here the TLS CA and the
// device's certificate and key, DER). A strict subset of the SDK's typings/Resource.d.ts.

declare module "Resource" {
  const Resource: {
    new (path: string): object;
    exists(path: string): boolean;
  };

  export { Resource as default };
}
