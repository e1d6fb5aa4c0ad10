/**
 * `@plaza/client`: a typed client for Plaza. Everything an app needs is exported from here.
 */
export { createClient, PlazaClient } from "./client.js";
export type { ClientOptions, BatchOp, BatchResult, GraphNode, UploadedFile, Job } from "./client.js";
export { PlazaError } from "./errors.js";
export { Auth } from "./auth.js";
export type { TotpEnrollment, SessionInfo, ApiKey, Provider } from "./auth.js";
export { EntityHandle } from "./entities.js";
export type { ListOptions, ListPage, CursorPage, AggregateSpec, AggregateGroup, SearchOptions, SearchResult, LinkResult, OfflineEntity } from "./entities.js";
export { LiveQuery } from "./live.js";
export type { Subscription, SubscribeOptions } from "./live.js";
export { Room, mergePatch } from "./rooms.js";
export type { Member, PresenceEvent, RoomEvent, StateChange, Joined } from "./rooms.js";
export { Shard, Shards, Interpolator, lerpJson } from "./shards.js";
export type { Snapshot, ShardInfo, ArenaState, ShardOptions, InterpolatorOptions } from "./shards.js";
export { PubSub } from "./pubsub.js";
export { OfflineQueue } from "./offline.js";
export type { QueuedChange, FlushOutcome, OfflineOptions, PushAnswer, PushResult } from "./offline.js";
export { Socket } from "./socket.js";
export type { SocketStatus, WebSocketLike, WebSocketConstructor, ReconnectOptions } from "./socket.js";
export { memoryStorage, localStorageStorage } from "./storage.js";
export type { KeyValueStorage } from "./storage.js";
export type { Json, SystemFields, EntityTypes, UntypedEntity, UntypedSchema, Schema, Filter, FieldOps, FieldCondition, Order, Change, Session, MfaRequired, Me } from "./types.js";
