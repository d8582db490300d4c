// Signed artifact updates on the device, generic over the kind (an installer per kind; firmware's
// writes an app partition with Moddable's `ota`):
//
//   offer (d/{id}/artifact) → trust records applied → manifest verified (trusted key, signature,
//   kind, target, size, version or a signed downgrade grant) → random start delay within the
//   campaign's window → chunks from the gateway (d/{id}/artifact/get → /chunk), resumable from the
//   last checkpoint after a lost link or a reboot → SHA-256 of the whole artifact = the manifest's →
//   complete() → reboot into the new image, pending verification → health check (connected to the
//   gateway, sampling, no reset for otaHealthWindowMs) → confirmed; else back to the old image,
//   which reports the rollback.
//
// Every step is reported on d/{id}/artifact/status. The job is kept in preference (its manifest,
// signature and checkpoint), so a reset at any point resumes or concludes it.

import {
  ARTIFACT_LIMITS,
  type ArtifactFailure,
  type ArtifactManifest,
  type ArtifactOffer,
  type ArtifactStatus,
  type ArtifactStatusReport,
  artifactTopics,
  bytesToHex,
  CHUNK_HEADER_BYTES,
  ChunkStatus,
  compareSemver,
  parseArtifactManifest,
  parseArtifactOffer,
  parseDowngradeGrant,
  readChunkHeader,
  targetMatches,
} from "@kestrel/wire/artifacts";
import { Digest } from "crypt";
import FirmwareInstaller from "kestrel/firmware-installer";
import type Log from "kestrel/log";
import { describeError } from "kestrel/log";
import { lastInvalidVersion, markValid, rollback, runningState, runningVersion } from "kestrel/ota-rollback";
import { markDeliberateReset } from "kestrel/reset";
import TrustStore from "kestrel/trust-store";
import Preference from "preference";
import Timer from "timer";

export interface OtaSettings {
  /** The chip and board this build runs on; an artifact's target must match them. */
  chip: string;
  board: string;
  /** The organization's signing keys the device is provisioned with: "keyId:04<x><y>,...". */
  keys: string;
  /** How long a new image must run healthy before it is confirmed. */
  healthWindowMs: number;
}

export interface UpdaterHost {
  deviceId: string;
  log: Log;
  /** Publishes at QoS 1 while connected; false when it could not. */
  publish(topic: string, payload: string): boolean;
  /** Why the running image does not look healthy (no gateway, no samples); undefined when it does. */
  healthProblem(): string | undefined;
  /**
   * Restarts the chip (into the new image). The app does it: Moddable's `system` module defines a
   * global rather than exports, and how the app reaches it is the app's business.
   */
  restart(): void;
}

type Stage = "waiting" | "downloading" | "rebooting";

/** What survives a reset: the offer being worked on and how far it got. */
interface Job {
  campaign: string;
  manifest: string;
  sig: string;
  sha256: string;
  version: string;
  size: number;
  /** Bytes verified into the partition, a multiple of the checkpoint (or the whole). */
  offset: number;
  stage: Stage;
  /** The version running when the offer came: the one a rollback returns to. */
  from: string;
}

/** esp_ota_img_states_t: a new image boots pending verification until confirmed. */
const PENDING_VERIFY = 1;
const PREFERENCE_DOMAIN = "kestrel";
const JOB_KEY = "otajob";
/** The health check's verdict, written by the new image before it rolls back, read by the old one. */
const FAILURE_KEY = "otafail";
const WINDOW_BYTES = ARTIFACT_LIMITS.chunkBytes * ARTIFACT_LIMITS.chunksPerRequest;
/** The job's offset is written to flash this often: a reset loses at most this much download. */
const CHECKPOINT_BYTES = 64 * 1024;
/** A chunk request unanswered this long is made again. */
const REQUEST_TIMEOUT_MS = 5_000;
/** No progress for this long while connected: the download is given up. */
const STALL_LIMIT_MS = 10 * 60_000;
/** Lets the last reports leave before the chip resets into the new image. */
const REBOOT_DELAY_MS = 1_000;
/** Bytes written back to the partition per turn when a download resumes after a reset. */
const REWRITE_BYTES = 16 * 1024;
const PROGRESS_STEPS = 10;

export function readOtaSettings(config: Readonly<Record<string, unknown>>): OtaSettings {
  const text = (key: string, fallback: string): string => {
    const value = config[key] ?? fallback;
    if (typeof value !== "string") throw new Error(`config: ${key} must be a string`);
    return value;
  };
  const window = Number(config.otaHealthWindowMs ?? 120_000);
  if (!Number.isInteger(window) || window < 1_000 || window > 3_600_000)
    throw new Error("config: otaHealthWindowMs must be an integer 1000..3600000");
  return {
    chip: text("chip", "esp32"),
    board: text("board", "esp32"),
    keys: text("otaKeys", ""),
    healthWindowMs: window,
  };
}

class Refusal extends Error {
  readonly code: ArtifactFailure;

  constructor(code: ArtifactFailure, reason: string) {
    super(reason);
    this.code = code;
  }
}

export default class ArtifactUpdater {
  readonly #host: UpdaterHost;
  readonly #log: Log;
  readonly #settings: OtaSettings;
  readonly #trust: TrustStore;
  readonly #installer = new FirmwareInstaller();
  readonly #offerTopic: string;
  readonly #chunkTopic: string;
  readonly #statusTopic: string;
  readonly #version: string;
  #job: Job | undefined;
  #online = false;
  /** Reports not sent yet (offline), oldest first; the last word on a job must reach the cloud. */
  readonly #unsent: string[] = [];
  #digest: Digest | undefined;
  /** Bytes of the job written to the partition in this boot (the download's own position). */
  #written = 0;
  #downloading = false;
  #rewriting = false;
  /** Where the partition's content ends when a resumed download writes it back. */
  #rewriteEnd = 0;
  #requestTimer: Timer | undefined;
  #startTimer: Timer | undefined;
  #stallTimer: Timer | undefined;
  #healthTimer: Timer | undefined;
  #progressStep = -1;

  constructor(host: UpdaterHost, settings: OtaSettings) {
    this.#host = host;
    this.#log = host.log;
    this.#settings = settings;
    this.#trust = new TrustStore(settings.keys, host.log);
    this.#offerTopic = artifactTopics.offer(host.deviceId);
    this.#chunkTopic = artifactTopics.chunk(host.deviceId);
    this.#statusTopic = artifactTopics.status(host.deviceId);
    this.#version = runningVersion();
    this.#job = this.#loadJob();
  }

  /** The version this image runs (esp_app_desc_t), which the device reports as `fw`. */
  get version(): string {
    return this.#version;
  }

  /** The topics to subscribe to on every connect. */
  get topics(): string[] {
    return [this.#offerTopic, this.#chunkTopic];
  }

  handles(topic: string): boolean {
    return topic === this.#offerTopic || topic === this.#chunkTopic;
  }

  /**
   * Once at boot: a job that was rebooting concludes here. The new image, pending verification,
   * starts its health check; the old one, back after a rollback, reports it. resetReason: why this
   * boot happened (kestrel/reset).
   */
  afterBoot(resetReason: string): void {
    const job = this.#job;
    if (runningState() === PENDING_VERIFY) {
      this.#log.write("info", "new image pending verification: health check", { version: this.#version }, "ota");
      this.#healthTimer = Timer.set(this.#onHealthCheck, this.#settings.healthWindowMs);
      return;
    }
    if (job?.stage !== "rebooting") return;
    if (job.version === this.#version) {
      // Confirmed before a reset that came before the job was cleared.
      this.#finish("confirmed", {});
      return;
    }
    const failure = this.#takeFailure();
    const code: ArtifactFailure = failure ? "health_check" : "boot_failed";
    const reason = failure ?? `version ${job.version} reset before it was confirmed (reset: ${resetReason})`;
    this.#log.write(
      "error",
      "update rolled back",
      { version: job.version, running: this.#version, code, reason, invalid: lastInvalidVersion() },
      "ota",
    );
    this.#finish("rolled-back", { code, reason });
  }

  /** The MQTT client is ready and subscribed: unsent reports go, a download resumes. */
  connected(): void {
    this.#online = true;
    while (this.#unsent.length > 0) {
      if (!this.#host.publish(this.#statusTopic, this.#unsent[0] as string)) break;
      this.#unsent.shift();
    }
    if (this.#job?.stage === "downloading") this.#resume();
  }

  disconnected(): void {
    this.#online = false;
    Timer.clear(this.#requestTimer);
    this.#requestTimer = undefined;
  }

  message(topic: string, data: ArrayBuffer): void {
    try {
      if (topic === this.#offerTopic) this.#onOffer(String.fromArrayBuffer(data));
      else this.#onChunk(new Uint8Array(data));
    } catch (error) {
      if (error instanceof Refusal) this.#fail(error.code, error.message);
      else this.#log.write("error", "artifact message failed", { error: describeError(error) }, "ota");
    }
  }

  // --- the offer ---------------------------------------------------------------------------------

  #onOffer(text: string): void {
    const parsed = parseArtifactOffer(text);
    if (!parsed.ok) {
      this.#log.write("warn", "artifact offer ignored", { error: parsed.error.message }, "ota");
      return;
    }
    const offer = parsed.value;
    const current = this.#job;
    if (runningState() === PENDING_VERIFY) {
      this.#log.write(
        "info",
        "artifact offer ignored while this image is being verified",
        { campaign: offer.campaign },
        "ota",
      );
      return;
    }
    const manifest = this.#verifiedManifest(offer);
    if (current && current.sha256 === manifest.sha256) {
      // The same artifact offered again (a lost report, or another campaign for it): carry on.
      current.campaign = offer.campaign;
      this.#saveJob();
      this.#report(current.stage === "waiting" ? "notified" : "downloading", this.#progress());
      return;
    }
    if (manifest.version === this.#version) {
      this.#reportFor(offer.campaign, manifest.sha256, "confirmed", {
        reason: `version ${manifest.version} runs already`,
      });
      return;
    }
    if (current) this.#abandon(`superseded by campaign ${offer.campaign}`);
    this.#job = {
      campaign: offer.campaign,
      manifest: offer.manifest.text,
      sig: offer.manifest.sig,
      sha256: manifest.sha256,
      version: manifest.version,
      size: manifest.size,
      offset: 0,
      stage: "waiting",
      from: this.#version,
    };
    this.#saveJob();
    const delay = Math.floor(Math.random() * offer.windowS * 1000);
    this.#log.write(
      "info",
      "update offered",
      { campaign: offer.campaign, version: manifest.version, startInMs: delay },
      "ota",
    );
    this.#report("notified", {});
    this.#startTimer = Timer.set(this.#onStart, delay);
  }

  /** The manifest, if everything about it checks out; else a Refusal saying why (and nothing changes). */
  #verifiedManifest(offer: ArtifactOffer): ArtifactManifest {
    const refuse = (code: ArtifactFailure, reason: string): never => {
      const sha = /"sha256":"([0-9a-f]{64})"/.exec(offer.manifest.text)?.[1] ?? "0".repeat(64);
      // Reported against the offer (no job exists for it), then nothing more is done.
      this.#reportFor(offer.campaign, sha, "failed", { code, reason });
      throw new Refusal(code, reason);
    };
    const refused = this.#trust.apply(offer.trust);
    if (refused > 0) this.#log.write("warn", "trust records refused", { refused }, "ota");
    const parsed = parseArtifactManifest(offer.manifest.text);
    if (!parsed.ok) return refuse("bad_signature", `manifest unreadable: ${parsed.error.message}`);
    const manifest = parsed.value;
    if (!this.#trust.has(manifest.keyId))
      return refuse(
        "unknown_key",
        `key ${manifest.keyId} is not trusted (trusted: ${this.#trust.keyIds.join(" ") || "none"})`,
      );
    if (!this.#trust.verify(offer.manifest, manifest.keyId))
      return refuse("bad_signature", `the manifest's signature does not verify with key ${manifest.keyId}`);
    if (manifest.kind !== this.#installer.kind) return refuse("wrong_kind", `this device installs no ${manifest.kind}`);
    const { chip, board } = this.#settings;
    if (!targetMatches(manifest.target, chip, board))
      return refuse(
        "wrong_target",
        `built for ${manifest.target.chip}/${manifest.target.board}, this is ${chip}/${board}`,
      );
    if (manifest.size > this.#installer.capacity)
      return refuse("too_large", `${manifest.size} bytes do not fit the ${this.#installer.capacity}-byte partition`);
    if (compareSemver(manifest.version, this.#version) < 0 && !this.#downgradeGranted(offer, manifest))
      return refuse(
        "downgrade",
        `${manifest.version} is older than ${this.#version} and the campaign allows no downgrade`,
      );
    return manifest;
  }

  #downgradeGranted(offer: ArtifactOffer, manifest: ArtifactManifest): boolean {
    if (!offer.downgrade) return false;
    const grant = parseDowngradeGrant(offer.downgrade.text);
    return (
      grant.ok &&
      grant.value.campaign === offer.campaign &&
      grant.value.sha256 === manifest.sha256 &&
      this.#trust.verify(offer.downgrade, grant.value.keyId)
    );
  }

  readonly #onStart = (): void => {
    this.#startTimer = undefined;
    const job = this.#job;
    if (job?.stage !== "waiting") return;
    job.stage = "downloading";
    this.#saveJob();
    this.#resume();
  };

  // --- the download ------------------------------------------------------------------------------

  /** Starts (or picks up) the download: the installer is opened and what flash holds is written back first. */
  #resume(): void {
    const job = this.#job;
    if (!job || this.#downloading || this.#rewriting) {
      if (this.#downloading) this.#request();
      return;
    }
    try {
      this.#installer.begin();
    } catch (error) {
      this.#fail("flash_error", `cannot start writing: ${describeError(error)}`);
      return;
    }
    this.#digest = new Digest("SHA256");
    this.#written = 0;
    this.#armStall();
    if (job.offset > 0) {
      this.#log.write("info", "resuming the download", { offset: job.offset, size: job.size }, "ota");
      this.#rewriteEnd = job.offset;
      this.#rewriting = true;
      Timer.set(this.#onRewrite, 0);
      return;
    }
    this.#downloading = true;
    this.#report("downloading", this.#progress());
    this.#request();
  }

  /**
   * One slice of writing back what the partition held. Before each checkpoint-sized block is
   * rewritten, the job's offset is moved back to its start: a reset in the middle of the block then
   * resumes before it, never after a sector being rewritten.
   */
  readonly #onRewrite = (): void => {
    if (!this.#job || !this.#rewriting) return;
    const end = this.#rewriteEnd;
    const at = this.#written;
    if (at < end) {
      try {
        if (at % CHECKPOINT_BYTES === 0) this.#checkpoint(at);
        const length = Math.min(REWRITE_BYTES, end - at);
        (this.#digest as Digest).write(this.#installer.rewrite(at, length));
        this.#written = at + length;
      } catch (error) {
        this.#rewriting = false;
        this.#fail("flash_error", `rewriting the partition failed: ${describeError(error)}`);
        return;
      }
      Timer.set(this.#onRewrite, 0);
      return;
    }
    this.#rewriting = false;
    this.#downloading = true;
    this.#checkpoint(this.#written);
    this.#report("downloading", this.#progress());
    this.#request();
  };

  #request(): void {
    const job = this.#job;
    Timer.clear(this.#requestTimer);
    this.#requestTimer = undefined;
    if (!job || !this.#downloading || !this.#online) return;
    const length = Math.min(WINDOW_BYTES, job.size - this.#written);
    const request = JSON.stringify({ v: 1, sha256: job.sha256, offset: this.#written, length });
    this.#host.publish(artifactTopics.get(this.#host.deviceId), request);
    this.#requestTimer = Timer.set(this.#onRequestTimeout, REQUEST_TIMEOUT_MS);
  }

  readonly #onRequestTimeout = (): void => {
    this.#requestTimer = undefined;
    this.#request();
  };

  #onChunk(message: Uint8Array): void {
    const job = this.#job;
    const header = readChunkHeader(message);
    if (!job || !this.#downloading || !header || header.shaPrefix !== job.sha256.slice(0, 16)) return;
    switch (header.status) {
      case ChunkStatus.ok:
        break;
      case ChunkStatus.busy:
      case ChunkStatus.unavailable:
        Timer.clear(this.#requestTimer);
        this.#requestTimer = Timer.set(this.#onRequestTimeout, header.retryAfterMs + Math.floor(Math.random() * 500));
        return;
      case ChunkStatus.notFound:
        throw new Refusal("download_failed", "the gateway has no such artifact");
      default:
        throw new Refusal("truncated", `the gateway has fewer than ${job.size} bytes of the artifact`);
    }
    if (header.size !== job.size)
      throw new Refusal("truncated", `the gateway's copy has ${header.size} bytes, the manifest says ${job.size}`);
    // A chunk of an earlier request, answered after it was asked for again.
    if (header.offset !== this.#written) return;
    const data = message.subarray(CHUNK_HEADER_BYTES);
    if (header.offset === 0) {
      const problem = this.#installer.checkHead(data, this.#settings.chip, job.version);
      if (problem) throw new Refusal(problem.code, problem.reason);
    }
    try {
      this.#installer.write(data);
    } catch (error) {
      throw new Refusal("flash_error", `writing the partition failed: ${describeError(error)}`);
    }
    (this.#digest as Digest).write(
      (message.buffer as ArrayBuffer).slice(
        message.byteOffset + CHUNK_HEADER_BYTES,
        message.byteOffset + message.byteLength,
      ),
    );
    this.#written += data.length;
    this.#armStall();
    if (this.#written % CHECKPOINT_BYTES === 0) this.#checkpoint(this.#written);
    const step = Math.floor((this.#written * PROGRESS_STEPS) / job.size);
    if (step !== this.#progressStep && this.#written < job.size) this.#report("downloading", this.#progress());
    if (this.#written >= job.size) this.#conclude();
    else if (this.#written % WINDOW_BYTES === 0) this.#request();
  }

  /** The whole artifact is in the partition: its SHA-256 must be the manifest's, then the installer concludes. */
  #conclude(): void {
    const job = this.#job as Job;
    Timer.clear(this.#requestTimer);
    Timer.clear(this.#stallTimer);
    this.#requestTimer = undefined;
    this.#stallTimer = undefined;
    this.#downloading = false;
    this.#report("verifying", {});
    const digest = bytesToHex(new Uint8Array((this.#digest as Digest).close()));
    if (digest !== job.sha256)
      throw new Refusal(
        "tampered",
        `the artifact hashes to ${digest.slice(0, 16)}…, its manifest says ${job.sha256.slice(0, 16)}…`,
      );
    try {
      this.#installer.complete();
    } catch (error) {
      throw new Refusal("invalid_image", `the image did not pass its own check: ${describeError(error)}`);
    }
    job.stage = "rebooting";
    job.offset = job.size;
    this.#saveJob();
    this.#report("installed", {});
    this.#report("rebooting", {});
    this.#log.write("warn", "update installed, restarting into it", { version: job.version }, "ota");
    Timer.set(() => {
      markDeliberateReset("ota", this.#log);
      this.#host.restart();
    }, REBOOT_DELAY_MS);
  }

  #checkpoint(offset: number): void {
    const job = this.#job as Job;
    job.offset = offset;
    this.#saveJob();
  }

  #armStall(): void {
    Timer.clear(this.#stallTimer);
    this.#stallTimer = Timer.set(this.#onStall, STALL_LIMIT_MS);
  }

  readonly #onStall = (): void => {
    this.#stallTimer = undefined;
    if (!this.#job || !this.#downloading) return;
    // Offline the whole time: not the download's fault; it goes on once the link is back.
    if (!this.#online) {
      this.#armStall();
      return;
    }
    this.#fail("download_failed", `no progress for ${STALL_LIMIT_MS / 60_000} minutes at byte ${this.#written}`);
  };

  // --- after the reboot --------------------------------------------------------------------------

  readonly #onHealthCheck = (): void => {
    this.#healthTimer = undefined;
    const problem = this.#host.healthProblem();
    if (problem === undefined) {
      markValid();
      this.#log.write("info", "new image confirmed", { version: this.#version }, "ota");
      if (this.#job) this.#finish("confirmed", {});
      return;
    }
    this.#log.write(
      "error",
      "new image failed its health check, rolling back",
      { version: this.#version, problem },
      "ota",
    );
    Preference.set(PREFERENCE_DOMAIN, FAILURE_KEY, problem);
    markDeliberateReset("ota", this.#log);
    rollback();
  };

  #takeFailure(): string | undefined {
    try {
      const failure = Preference.get(PREFERENCE_DOMAIN, FAILURE_KEY);
      if (failure !== undefined) Preference.delete(PREFERENCE_DOMAIN, FAILURE_KEY);
      return typeof failure === "string" ? failure : undefined;
    } catch {
      return undefined;
    }
  }

  // --- reports and the job's end -----------------------------------------------------------------

  #progress(): { bytes: number; total: number } {
    const job = this.#job as Job;
    this.#progressStep = Math.floor((this.#written * PROGRESS_STEPS) / job.size);
    return { bytes: this.#written, total: job.size };
  }

  #report(status: ArtifactStatus, extra: Partial<ArtifactStatusReport>): void {
    const job = this.#job;
    if (job) this.#reportFor(job.campaign, job.sha256, status, extra);
  }

  #reportFor(campaign: string, sha256: string, status: ArtifactStatus, extra: Partial<ArtifactStatusReport>): void {
    const report: ArtifactStatusReport = { v: 1, campaign, sha256, status, ...extra, running: this.#version };
    if (report.reason !== undefined) report.reason = report.reason.slice(0, ARTIFACT_LIMITS.reasonLength);
    const text = JSON.stringify(report);
    if (this.#online && this.#unsent.length === 0 && this.#host.publish(this.#statusTopic, text)) return;
    // Progress is worth sending only while it is news; outcomes wait for the link.
    if (status === "downloading" && this.#unsent.length > 0) return;
    this.#unsent.push(text);
    if (this.#unsent.length > 4) this.#unsent.shift();
  }

  /** The job failed for good: reported, the partition write given up, the old image keeps running. */
  #fail(code: ArtifactFailure, reason: string): void {
    this.#log.write("error", "update failed", { code, reason }, "ota");
    this.#finish("failed", { code, reason });
  }

  #finish(status: ArtifactStatus, extra: Partial<ArtifactStatusReport>): void {
    this.#report(status, extra);
    this.#abandon(status);
  }

  #abandon(why: string): void {
    Timer.clear(this.#requestTimer);
    Timer.clear(this.#startTimer);
    Timer.clear(this.#stallTimer);
    this.#requestTimer = undefined;
    this.#startTimer = undefined;
    this.#stallTimer = undefined;
    this.#downloading = false;
    this.#rewriting = false;
    this.#installer.cancel();
    this.#digest = undefined;
    if (this.#job) this.#log.write("info", "update job ended", { campaign: this.#job.campaign, why }, "ota");
    this.#job = undefined;
    try {
      Preference.delete(PREFERENCE_DOMAIN, JOB_KEY);
    } catch (error) {
      this.#log.write("warn", "update job not cleared", { error: describeError(error) }, "ota");
    }
  }

  #loadJob(): Job | undefined {
    try {
      const saved = Preference.get(PREFERENCE_DOMAIN, JOB_KEY);
      return typeof saved === "string" ? (JSON.parse(saved) as Job) : undefined;
    } catch (error) {
      this.#log.write("error", "saved update job unreadable, dropped", { error: describeError(error) }, "ota");
      return undefined;
    }
  }

  #saveJob(): void {
    Preference.set(PREFERENCE_DOMAIN, JOB_KEY, JSON.stringify(this.#job));
  }
}
