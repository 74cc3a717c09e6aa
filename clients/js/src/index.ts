// @craftcode/realtime-client: a typed client for the CraftCode Realtime server (SPEC §5, main
// server at `/api/socket`), plus `login` for the REST call that gets the first token.

export {
  connect,
  newClientId,
  RealtimeClient,
  RealtimeError,
  uuidv7Floor,
  type ConnectOptions,
  type ConnectionStatus,
  type DeliveryInfo,
  type RealtimeEvents,
  type RealtimeSocket,
  type SendOptions,
} from "./client.js";
export { Call, type CallEvents } from "./calls.js";
export { login, type LoginOptions } from "./rest.js";
export type { UploadedFile, UploadOptions, UploadSource } from "./uploads.js";
export type * from "./types.js";
