/**
 * Rooms over the shared socket: members with presence, events with a room seq, and a shared
 * state document changed by merge patches. After a drop the room is joined again with
 * `since` = the last event seq seen (and the room's epoch): the server sends the members and
 * state as they are now, then the events missed, so `onEvent` sees each event once, in order.
 */
import { PlazaError } from "./errors.js";
import type { Channel, Frame, Socket } from "./socket.js";
import type { Json } from "./types.js";

export interface Member<P = Json> {
  user_id: string;
  presence: P | null;
}

export interface PresenceEvent<P = Json> {
  event: "joined" | "left" | "updated";
  user_id: string;
  presence?: P | null;
}

export interface RoomEvent<D = Json> {
  seq: number;
  /** The sending user; null when the server (admin) sent it. */
  from: string | null;
  event: string;
  data: D;
}

export interface StateChange<S = Record<string, Json>> {
  state: S;
  version: number;
  /** The merge patch that made it (null: the whole state was (re)loaded on join). */
  patch: Json | null;
  from: string | null;
}

export interface Joined<P = Json, S = Record<string, Json>> {
  joined: string;
  epoch: string;
  seq: number;
  members: Member<P>[];
  state: S;
  state_version: number;
}

type Listener<T> = (value: T) => void;

/** A room handle: `client.room("game-1")`. */
export class Room<P = Json, S extends Record<string, Json> = Record<string, Json>> implements Channel {
  private joining: { resolve: (j: Joined<P, S>) => void; reject: (e: PlazaError) => void } | null = null;
  private wanted = false;
  private presence: P | undefined;
  private epoch: string | null = null;
  private seq: number | null = null;
  private version = 0;
  private stateDoc = {} as S;
  private readonly memberMap = new Map<string, Member<P>>();
  private readonly presenceListeners = new Set<Listener<PresenceEvent<P>>>();
  private readonly eventListeners = new Set<Listener<RoomEvent>>();
  private readonly stateListeners = new Set<Listener<StateChange<S>>>();
  private readonly errorListeners = new Set<Listener<PlazaError>>();
  private readonly membersListeners = new Set<Listener<Member<P>[]>>();

  constructor(readonly name: string, private readonly socket: Socket, private readonly forget: (room: Room<any, any>) => void) {}

  /** The members now (presence included). */
  get members(): Member<P>[] {
    return [...this.memberMap.values()];
  }

  /** The shared state document now, and its version. */
  get state(): S {
    return this.stateDoc;
  }

  get stateVersion(): number {
    return this.version;
  }

  /** The last event seq seen (what a rejoin resumes from). */
  get lastSeq(): number | null {
    return this.seq;
  }

  /** Joins (with an optional presence); resolves with the members and state once joined. */
  join(options: { presence?: P } = {}): Promise<Joined<P, S>> {
    this.wanted = true;
    if (options.presence !== undefined) this.presence = options.presence;
    const answer = new Promise<Joined<P, S>>((resolve, reject) => (this.joining = { resolve, reject }));
    this.socket.attach(this); // on open (now, if already open) onOpen sends the join
    return answer;
  }

  /** Leaves the room; the handle can join again later. */
  leave(): void {
    this.wanted = false;
    this.socket.send({ type: "leave", room: this.name });
    this.socket.detach(this);
    this.memberMap.clear();
    this.forget(this);
  }

  /** Sends an event to every member (this connection included). */
  broadcast(event: string, data: Json = null): void {
    this.socket.sendNow({ type: "broadcast", room: this.name, event, data });
  }

  /** Sets this member's presence (kept, and sent again on every rejoin). */
  setPresence(presence: P): void {
    this.presence = presence;
    this.socket.send({ type: "presence", room: this.name, presence: presence as Json });
  }

  /** Applies an RFC 7386 merge patch to the shared state (`null` removes a key). */
  patch(patch: Partial<{ [K in keyof S]: S[K] | null }> | Record<string, Json>): void {
    this.socket.sendNow({ type: "state_patch", room: this.name, patch: patch as Json });
  }

  onPresence(listener: Listener<PresenceEvent<P>>): () => void {
    return add(this.presenceListeners, listener);
  }

  /** Every room event; with `name`, only events of that name. */
  onEvent<D = Json>(listener: Listener<RoomEvent<D>>): () => void;
  onEvent<D = Json>(name: string, listener: Listener<RoomEvent<D>>): () => void;
  onEvent<D = Json>(a: string | Listener<RoomEvent<D>>, b?: Listener<RoomEvent<D>>): () => void {
    const listener = (typeof a === "string" ? (e: RoomEvent) => e.event === a && b!(e as RoomEvent<D>) : a) as Listener<RoomEvent>;
    return add(this.eventListeners, listener);
  }

  onState(listener: Listener<StateChange<S>>): () => void {
    return add(this.stateListeners, listener);
  }

  /** The member list after any change (join, leave, presence, rejoin). */
  onMembers(listener: Listener<Member<P>[]>): () => void {
    return add(this.membersListeners, listener);
  }

  /** Refusals about this room (`FORBIDDEN`, `RATE_LIMITED`, `ROOM_FULL`, ...). */
  onError(listener: Listener<PlazaError>): () => void {
    return add(this.errorListeners, listener);
  }

  onOpen(): void {
    if (!this.wanted) return;
    const frame: Frame = { type: "join", room: this.name };
    if (this.presence !== undefined) frame.presence = this.presence as Json;
    if (this.seq !== null && this.epoch !== null) {
      frame.since = this.seq;
      frame.epoch = this.epoch;
    }
    this.socket.send(frame);
  }

  onFrame(frame: Frame): void {
    if (frame.room !== this.name && frame.ref !== this.name) return;
    switch (frame.type) {
      case "joined":
        return this.onJoined(frame as unknown as Joined<P, S>);
      case "presence":
        return this.onPresenceFrame(frame as unknown as PresenceEvent<P>);
      case "room_event": {
        const e = frame as unknown as RoomEvent;
        if (this.seq !== null && e.seq <= this.seq) return; // replayed twice: seen already
        this.seq = e.seq;
        for (const l of this.eventListeners) l({ seq: e.seq, from: e.from, event: e.event, data: e.data });
        return;
      }
      case "room_state": {
        const version = Number(frame.version);
        if (version <= this.version) return;
        this.stateDoc = mergePatch(this.stateDoc, frame.patch as Json) as S;
        this.version = version;
        const change = { state: this.stateDoc, version, patch: frame.patch as Json, from: (frame.from as string | null) ?? null };
        for (const l of this.stateListeners) l(change);
        return;
      }
      case "error":
        if (frame.ref === this.name) this.refused(frame);
        return;
    }
  }

  private onJoined(j: Joined<P, S>): void {
    this.epoch = j.epoch;
    // A fresh join starts at the room's seq; a resumed one keeps ours (replay follows).
    if (this.seq === null) this.seq = j.seq;
    this.memberMap.clear();
    for (const m of j.members) this.memberMap.set(m.user_id, m);
    this.emitMembers();
    if (j.state_version !== this.version || this.joining) {
      this.stateDoc = j.state;
      this.version = j.state_version;
      const change = { state: this.stateDoc, version: this.version, patch: null, from: null };
      for (const l of this.stateListeners) l(change);
    }
    this.joining?.resolve(j);
    this.joining = null;
  }

  private onPresenceFrame(p: PresenceEvent<P>): void {
    if (p.event === "left") this.memberMap.delete(p.user_id);
    else this.memberMap.set(p.user_id, { user_id: p.user_id, presence: p.presence ?? null });
    for (const l of this.presenceListeners) l(p);
    this.emitMembers();
  }

  private refused(frame: Frame): void {
    const error = PlazaError.fromFrame(frame);
    if (error.code === "RESYNC_REQUIRED") {
      // Too far behind (or the room restarted): join afresh; the new `joined` brings members
      // and state, but the events in between are gone.
      this.seq = null;
      this.epoch = null;
      this.onOpen();
    } else if (this.joining) {
      this.joining.reject(error);
      this.joining = null;
      this.wanted = false;
    }
    for (const l of this.errorListeners) l(error);
  }

  private emitMembers(): void {
    const members = this.members;
    for (const l of this.membersListeners) l(members);
  }
}

function add<T>(set: Set<T>, item: T): () => void {
  set.add(item);
  return () => set.delete(item);
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: Json, patch: Json): Json {
  if (typeof patch !== "object" || patch === null || Array.isArray(patch)) return patch;
  const out: Record<string, Json> = typeof target === "object" && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k] ?? null, v);
  }
  return out;
}
