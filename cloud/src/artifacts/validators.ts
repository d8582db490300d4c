// Content checks by artifact kind: an upload is accepted only if its bytes are what its kind says.
// Each kind registers one validator; `firmware` (ESP32 application images) is the first, plugins and
// models add theirs when their issues land. A kind without a validator cannot be uploaded.

import { createHash } from "node:crypto";
import type { WireError } from "@kestrel/wire";
import { type ArtifactKind, type ArtifactTarget, isSemver } from "@kestrel/wire/artifacts";
import { Esp32ImageChecker, type Sha256 } from "@kestrel/wire/esp32-image";

/** What the uploader says the artifact is; the validator may fill in what the content tells (version). */
export interface DeclaredArtifact {
  kind: ArtifactKind;
  name: string;
  version: string | undefined;
  target: ArtifactTarget;
}

export type CheckResult =
  | { ok: true; version: string; details: Record<string, string> }
  | { ok: false; error: WireError };

/** Follows one upload as its bytes arrive. */
export interface ContentCheck {
  /** An error as soon as the bytes cannot be a valid artifact of this kind. */
  write(bytes: Uint8Array): WireError | undefined;
  end(): CheckResult;
}

export interface ArtifactValidator {
  readonly kind: ArtifactKind;
  begin(declared: DeclaredArtifact): ContentCheck;
}

export function nodeSha256(): Sha256 {
  const hash = createHash("sha256");
  return {
    update(bytes) {
      hash.update(bytes);
    },
    digest: () => new Uint8Array(hash.digest()),
  };
}

/**
 * An ESP32 application image as esp_ota_end() will check it (structure, checksum, appended digest),
 * built for the declared chip, and whose esp_app_desc_t version is the declared version.
 */
export const firmwareValidator: ArtifactValidator = {
  kind: "firmware",
  begin(declared) {
    const checker = new Esp32ImageChecker(nodeSha256());
    return {
      write: (bytes) => {
        const error = checker.write(bytes);
        return error && !error.ok ? error.error : undefined;
      },
      end: () => {
        const image = checker.end();
        if (!image.ok) return image;
        const { chip, app } = image.value;
        if (chip !== declared.target.chip)
          return {
            ok: false,
            error: {
              code: "wrong_target",
              message: `the image is built for chip ${chip ?? `id ${image.value.chipId}`}, not ${declared.target.chip}`,
            },
          };
        if (!isSemver(app.version))
          return {
            ok: false,
            error: {
              code: "invalid_version",
              message: `the image's version "${app.version}" is not a semantic version`,
            },
          };
        if (declared.version !== undefined && declared.version !== app.version)
          return {
            ok: false,
            error: {
              code: "version_mismatch",
              message: `the image says version ${app.version}, the upload says ${declared.version}`,
            },
          };
        return {
          ok: true,
          version: app.version,
          details: { projectName: app.projectName, idfVersion: app.idfVersion },
        };
      },
    };
  },
};

export const VALIDATORS: ReadonlyMap<ArtifactKind, ArtifactValidator> = new Map([["firmware", firmwareValidator]]);
