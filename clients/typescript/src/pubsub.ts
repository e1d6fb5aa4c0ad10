/**
 * Pub/sub topics: live only (no history), at most once. Subscriptions ride the shared socket
 * and are renewed after a reconnect; messages published while disconnected are not seen.
 */
import { PlazaError } from "./errors.js";
import type { Http } from "./http.js";
import type { Channel, Frame, Socket } from "./socket.js";
import type { Json } from "./types.js";

interface Topic {
  listeners: Set<(message: Json) => void>;
  waiting: { resolve: () => void; reject: (e: PlazaError) => void }[];
}

export class PubSub implements Channel {
  private readonly topics = new Map<string, Topic>();
  private attached = false;

  /** `socket` is asked for only when subscribing: publishing is plain HTTP. */
  constructor(private readonly socketOf: () => Socket, private readonly http: Http) {}

  private get socket(): Socket {
    return this.socketOf();
  }

  /** Publishes to every subscribed socket (admin, or as the topic rules allow). */
  publish(topic: string, message: Json): Promise<{ delivered: number }> {
    return this.http.post("/api/pubsub/publish", { topic, message });
  }

  /** Resolves once the server confirmed the subscription; the returned function ends it. */
  subscribe(topic: string, listener: (message: Json) => void): Promise<() => void> {
    let t = this.topics.get(topic);
    const fresh = !t;
    if (!t) {
      t = { listeners: new Set(), waiting: [] };
      this.topics.set(topic, t);
    }
    t.listeners.add(listener);
    const entry = t;
    const confirmed = new Promise<void>((resolve, reject) => entry.waiting.push({ resolve, reject }));
    if (!this.attached) {
      this.attached = true;
      this.socket.attach(this);
    } else if (fresh) {
      this.socket.send({ type: "pubsub_subscribe", topic });
    } else if (this.socket.isOpen) {
      entry.waiting.pop()?.resolve();
    }
    return confirmed.then(() => () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size === 0 && this.topics.get(topic) === entry) {
        this.topics.delete(topic);
        this.socket.send({ type: "pubsub_unsubscribe", topic });
      }
    });
  }

  onOpen(): void {
    for (const topic of this.topics.keys()) this.socket.send({ type: "pubsub_subscribe", topic });
  }

  onFrame(frame: Frame): void {
    const topic = this.topics.get(String(frame.topic ?? frame.ref));
    if (!topic) return;
    if (frame.type === "pubsub") {
      for (const l of topic.listeners) l(frame.message as Json);
    } else if (frame.type === "pubsub_subscribed") {
      for (const w of topic.waiting.splice(0)) w.resolve();
    } else if (frame.type === "error" && typeof frame.ref === "string") {
      const error = PlazaError.fromFrame(frame);
      for (const w of topic.waiting.splice(0)) w.reject(error);
      this.topics.delete(frame.ref);
    }
  }
}
