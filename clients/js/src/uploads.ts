// Attachments (SPEC §12): files go over HTTP with the tus 1.0.0 protocol through the official
// `tus-js-client`, never through the socket. `upload()` of the client starts one here: the bearer
// token is set on every request as it is at that moment (so a token the client refreshed
// meanwhile is the one sent), requests that failed for a passing reason are retried and continue
// at the server's offset, and an abort signal abandons the upload on the server (tus
// `termination`).

import { defaultOptions, Upload, type DetailedError, type HttpRequest } from "tus-js-client";

import { RealtimeError } from "./client.js";
import type { Attachment, Id } from "./types.js";

/** What `upload()` takes beside the file and the conversation. */
export interface UploadOptions {
  /** Bytes the server acknowledged so far, and the file's size (tus-js-client's `onProgress`). */
  onProgress?: (sent: number, total: number) => void;
  /** Aborting it stops the upload and deletes what the server has of it; the promise rejects with an `AbortError`. */
  signal?: AbortSignal;
  /** The file name the others see. Default: the `File`'s name, else `"file"`. */
  filename?: string;
  /** The claimed media type (the server sniffs the bytes anyway). Default: the `File`/`Blob` type, else `application/octet-stream`. */
  contentType?: string;
  /**
   * The largest body of one PATCH request, in bytes. Default: the whole file in one request
   * (tus-js-client's default); set one to go through proxies that limit request bodies.
   */
  chunkSize?: number;
  /**
   * Pauses before each new try after a request failed for a passing reason (the connection
   * dropped, 5xx, 409, 423, 429, or a 401 when a newer token is to be had), in ms; each try
   * continues at the offset the server has. Default `[0, 1000, 3000, 5000, 10000]`; `[]` never retries.
   */
  retryDelays?: number[];
  /**
   * In a browser, remember the unfinished upload (tus-js-client's URL storage, localStorage), so
   * that uploading the same file to the same conversation after a reload continues where it
   * stopped. Default true. Node keeps no such list.
   */
  resume?: boolean;
  /** Called once the server made the upload, with its id (before the first byte is sent). */
  onUploadId?: (id: Id) => void;
}

/** A finished upload: attach it with `sendToConversation(conversationId, text, {attachmentIds: [id]})`. */
export interface UploadedFile {
  /** The upload's id: the attachment id to send. */
  id: Id;
  conversationId: Id;
  filename: string;
  size: number;
  /** The type this client claimed; the stored `contentType` is what the server sniffed. */
  contentType: string;
}

/** What a file to upload may be: a `File` or `Blob`, or bytes (`Buffer`, `Uint8Array`, `ArrayBuffer`). */
export type UploadSource = Blob | Uint8Array | ArrayBuffer;

/** What the upload needs from the client. */
export interface UploadContext {
  endpoint: string;
  /** The token to send now (the client's newest). */
  token: () => Promise<string | null>;
  /**
   * After a 401 for the token `refused`: whether a try with another is worth it (the client got
   * a newer one meanwhile, or its `getToken` can fetch one).
   */
  refreshToken: (refused: string | null) => boolean;
  userId: Id | null;
}

const DEFAULT_RETRY_DELAYS = [0, 1000, 3000, 5000, 10_000];

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string" && typeof (globalThis as { window?: unknown }).window === "undefined";
}

/** What tus-js-client's reader takes here: a Buffer in Node, a Blob in browsers. */
async function readable(file: UploadSource): Promise<Blob | Uint8Array> {
  const NodeBuffer = (globalThis as { Buffer?: { from(data: ArrayBuffer | Uint8Array): Uint8Array; isBuffer(x: unknown): boolean } }).Buffer;
  if (isNode() && NodeBuffer) {
    if (NodeBuffer.isBuffer(file)) return file as Uint8Array;
    if (file instanceof Uint8Array) return NodeBuffer.from(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer);
    if (file instanceof ArrayBuffer) return NodeBuffer.from(file);
    return NodeBuffer.from(await (file as Blob).arrayBuffer());
  }
  if (file instanceof Uint8Array || file instanceof ArrayBuffer) return new Blob([file as BlobPart]);
  return file;
}

function sizeOf(file: UploadSource): number {
  if (file instanceof ArrayBuffer || file instanceof Uint8Array) return file.byteLength;
  return (file as Blob).size;
}

/** The server's `{error: {code, message}}` of a failed request, as a `RealtimeError`. */
function uploadError(err: Error | DetailedError): Error {
  const detailed = err as DetailedError;
  const res = detailed.originalResponse;
  if (!res) {
    return new RealtimeError("upload_failed", err.message);
  }
  const status = res.getStatus();
  let body: { error?: { code?: string; message?: string; fields?: Record<string, string> } } | null = null;
  try {
    body = JSON.parse(res.getBody() || "null");
  } catch {
    body = null;
  }
  const code = body?.error?.code ?? `http_${status}`;
  const message = body?.error?.message ?? `${err.message} (HTTP ${status})`;
  return new RealtimeError(code, message, body?.error?.fields);
}

function abortReason(signal: AbortSignal): Error {
  const reason = signal.reason as unknown;
  if (reason instanceof Error) return reason;
  const error = new Error("the upload was aborted");
  error.name = "AbortError";
  return error;
}

/** One tus upload of `file` to `conversationId`; resolves once the server has every byte. */
export async function tusUpload(
  context: UploadContext,
  file: UploadSource,
  conversationId: Id,
  options: UploadOptions,
  started: (id: Id) => void,
): Promise<UploadedFile> {
  const { signal } = options;
  if (signal?.aborted) throw abortReason(signal);
  const named = file as { name?: unknown; type?: unknown };
  const filename = options.filename ?? (typeof named.name === "string" && named.name ? named.name : "file");
  const contentType =
    options.contentType ?? (typeof named.type === "string" && named.type ? named.type : "application/octet-stream");
  const size = sizeOf(file);
  const input = await readable(file);
  const resume = options.resume ?? true;

  return new Promise<UploadedFile>((resolve, reject) => {
    let id: Id | null = null;
    let settled = false;
    const finish = (action: () => void) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      action();
    };
    const upload: Upload = new Upload(input as Blob, {
      endpoint: context.endpoint,
      metadata: { filename, filetype: contentType, conversationId },
      uploadSize: size,
      ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
      retryDelays: options.retryDelays ?? DEFAULT_RETRY_DELAYS,
      storeFingerprintForResuming: resume,
      removeFingerprintOnSuccess: true,
      // One file may go to several conversations, and a browser may be shared: the stored
      // upload is found again only for the same file, conversation and user.
      fingerprint: async (f: File, o) => {
        const base = await defaultOptions.fingerprint(f, o);
        return base ? `${base}-${conversationId}-${context.userId ?? ""}` : (null as unknown as string);
      },
      // Set on every request, so the newest token (after a `tokenUpdated`) is the one sent.
      onBeforeRequest: async (req: HttpRequest) => {
        const token = await context.token();
        if (token) req.setHeader("Authorization", `Bearer ${token}`);
      },
      onShouldRetry: (err: DetailedError, attempt: number, opts) => {
        const status = err.originalResponse?.getStatus() ?? 0;
        if (status === 401) {
          // Retried when the client has a newer token than the refused one, or can get one.
          const sent = err.originalRequest?.getHeader("Authorization") ?? null;
          return attempt < 2 && context.refreshToken(sent ? sent.replace(/^Bearer /, "") : null);
        }
        if (status === 429) return true;
        return defaultOptions.onShouldRetry ? defaultOptions.onShouldRetry(err, attempt, opts) : status === 0 || status >= 500;
      },
      onUploadUrlAvailable: () => {
        const url = upload.url ?? "";
        id = decodeURIComponent(url.replace(/[?#].*$/, "").replace(/\/+$/, "").split("/").pop() ?? "");
        started(id);
        options.onUploadId?.(id);
      },
      onProgress: (sent: number, total: number) => options.onProgress?.(sent, total),
      onSuccess: () =>
        finish(() => {
          if (!id) {
            reject(new RealtimeError("upload_failed", "the server gave the upload no Location"));
            return;
          }
          resolve({ id, conversationId, filename, size, contentType });
        }),
      onError: (err: Error | DetailedError) => finish(() => reject(uploadError(err))),
    });
    const onAbort = () => {
      finish(() => reject(abortReason(signal!)));
      // Stops the requests, then `DELETE`s what the server has (tus `termination`).
      upload.abort(true).catch(() => {});
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const begin = async () => {
      if (resume) {
        const previous = await upload.findPreviousUploads().catch(() => []);
        const latest = previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1))[0];
        if (latest) upload.resumeFromPreviousUpload(latest);
      }
      if (!settled) upload.start();
    };
    void begin();
  });
}

/** An attachment's file (or its thumbnail) as an absolute URL against `base` (`""`: as given). */
export function resolveAttachmentUrl(base: string, attachment: Pick<Attachment, "url" | "thumbnailUrl">, variant: "file" | "thumbnail"): string | null {
  const path = variant === "thumbnail" ? attachment.thumbnailUrl : attachment.url;
  if (!path) return null;
  if (/^[a-z][a-z0-9+.-]*:/i.test(path) || !base) return path;
  return new URL(path, `${base}/`).href;
}
