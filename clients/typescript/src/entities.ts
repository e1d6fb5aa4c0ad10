/**
 * One entity's rows over HTTP (`client.entity("Todo")`), typed by the app's generated types:
 * CRUD, lists, cursors, queries, aggregates, search, relations, live subscriptions and live
 * queries, and queued offline writes.
 */
import type { Http, QueryValue } from "./http.js";
import { LiveHub, LiveQuery, type SubscribeOptions, type Subscription } from "./live.js";
import type { OfflineQueue } from "./offline.js";
import type { Change, EntityTypes, Filter, Json } from "./types.js";

export interface ListOptions<R> {
  limit?: number;
  offset?: number;
  /** `"title"`, `"-createdAt"`, `"priority:desc,title"`. */
  order?: string;
  /** The filter language (sent as `filter=`). */
  filter?: Filter<R>;
  /** Equality on fields as query parameters (`{ done: 0 }` → `?done=0`). */
  where?: { [F in keyof R]?: QueryValue };
}

export interface ListPage<R> {
  data: R[];
  count: number;
  offset: number;
  limit: number;
}

export interface CursorPage<R> {
  data: R[];
  next_cursor: string | null;
  has_more: boolean;
}

export interface AggregateSpec<R> {
  count?: "*" | (keyof R & string);
  sum?: (keyof R & string) | (keyof R & string)[];
  avg?: (keyof R & string) | (keyof R & string)[];
  min?: (keyof R & string) | (keyof R & string)[];
  max?: (keyof R & string) | (keyof R & string)[];
  groupBy?: (keyof R & string)[];
  where?: Filter<R>;
}

export interface AggregateGroup {
  key: Record<string, Json>;
  count?: number;
  sum?: Json;
  avg?: Json;
  min?: Json;
  max?: Json;
}

export interface SearchOptions<R> {
  facets?: (keyof R & string)[];
  limit?: number;
  offset?: number;
  filter?: Filter<R>;
}

export interface SearchResult<R> {
  data: (R & { _score: number })[];
  total: number;
  facets: Record<string, Record<string, number>>;
}

export interface LinkResult<R> {
  ok: true;
  entity: string;
  id: string;
  seq: number;
  data: R;
}

export class EntityHandle<E extends EntityTypes> {
  constructor(
    readonly name: string,
    private readonly http: Http,
    private readonly hub: () => LiveHub,
    private readonly queue: OfflineQueue | undefined,
  ) {}

  private path(id?: string): string {
    const base = `/api/entities/${encodeURIComponent(this.name)}`;
    return id === undefined ? base : `${base}/${encodeURIComponent(id)}`;
  }

  /** Inserts a row; the server picks the id unless `data.id` is given. */
  insert(data: E["insert"]): Promise<{ id: string }> {
    return this.http.post(this.path(), data);
  }

  get(id: string): Promise<E["row"]> {
    return this.http.get(this.path(id));
  }

  /** Changes some fields; answers the whole updated row. */
  update(id: string, patch: E["patch"]): Promise<E["row"]> {
    return this.http.request("PATCH", this.path(id), { body: patch });
  }

  delete(id: string): Promise<{ deleted: true }> {
    return this.http.request("DELETE", this.path(id));
  }

  /** One page by offset (`limit` default 100, at most 1000). */
  list(options: ListOptions<E["row"]> = {}): Promise<ListPage<E["row"]>> {
    const query: Record<string, QueryValue> = {
      limit: options.limit,
      offset: options.offset,
      order: options.order,
      filter: options.filter ? JSON.stringify(options.filter) : undefined,
      ...(options.where as Record<string, QueryValue> | undefined),
    };
    return this.http.get(this.path(), { query });
  }

  /** One page by keyset cursor, in id order; pass `next_cursor` back as `after`. */
  cursor(options: { limit?: number; after?: string | null } = {}): Promise<CursorPage<E["row"]>> {
    return this.http.get(`${this.path()}/cursor`, { query: { limit: options.limit, after: options.after ?? undefined } });
  }

  /** Every row, page by page, without holding them all. */
  async *all(pageSize = 500): AsyncGenerator<E["row"]> {
    let after: string | null = null;
    do {
      const page: CursorPage<E["row"]> = await this.cursor({ limit: pageSize, after });
      yield* page.data;
      after = page.has_more ? page.next_cursor : null;
    } while (after);
  }

  /** Rows matching a filter (at most 1000; `$limit`, `$order`, `$offset` inside it). */
  query(filter: Filter<E["row"]> = {}): Promise<E["row"][]> {
    return this.http.post(`/api/query/${encodeURIComponent(this.name)}`, filter);
  }

  aggregate(spec: AggregateSpec<E["row"]>): Promise<{ groups: AggregateGroup[] }> {
    return this.http.post(`/api/aggregate/${encodeURIComponent(this.name)}`, spec);
  }

  /** Full-text search over the entity's declared `search` fields, with facet counts. */
  search(q: string, options: SearchOptions<E["row"]> = {}): Promise<SearchResult<E["row"]>> {
    return this.http.get(`/api/search/${encodeURIComponent(this.name)}`, {
      query: {
        q,
        facets: options.facets?.join(","),
        limit: options.limit,
        offset: options.offset,
        filter: options.filter ? JSON.stringify(options.filter) : undefined,
      },
    });
  }

  /** Points relation `relation` of row `id` at `targetId` (see docs/CONTRACT.md for to-many). */
  link(id: string, relation: string, targetId: string): Promise<LinkResult<Record<string, Json>>> {
    return this.http.post("/api/link", { entity: this.name, id, relation, target_id: targetId });
  }

  unlink(id: string, relation: string, targetId: string): Promise<LinkResult<Record<string, Json>>> {
    return this.http.post("/api/unlink", { entity: this.name, id, relation, target_id: targetId });
  }

  /** Live changes of rows matching `filter` over the shared socket (resumes after drops). */
  subscribe(filter: Filter<E["row"]> | undefined, onChange: (change: Change<E["row"]>) => void, options?: SubscribeOptions): Subscription {
    return this.hub().subscribe<E["row"]>(this.name, filter, onChange, options);
  }

  /** An array of the rows matching `filter`, kept in sync: `.rows`, `.subscribe(cb)`, `.close()`. */
  live(filter?: Filter<E["row"]>): LiveQuery<E["row"]> {
    return new LiveQuery<E["row"]>(this.hub(), this.name, filter, () => this.query(filter ?? {}));
  }

  /**
   * Writes that survive being offline: kept in the client's durable queue and sent through
   * `/api/sync/push` with op ids (applied exactly once) when the server can be reached.
   * Needs `createClient({ offline: { storage } })`.
   */
  get offline(): OfflineEntity<E> {
    const queue = this.queue;
    if (!queue) throw new Error("offline writes need createClient({ offline: { storage } })");
    return {
      insert: (data) => queue.insert(this.name, data as Record<string, unknown>),
      update: (id, patch) => queue.update(this.name, id, patch as Record<string, unknown>),
      delete: (id) => queue.delete(this.name, id),
    };
  }
}

/** Queued writes of one entity; each resolves once the write is stored in the queue. */
export interface OfflineEntity<E extends EntityTypes> {
  /** The id is chosen here (a UUID), so the row can be used before it reaches the server. */
  insert(data: E["insert"]): Promise<{ id: string; op_id: string }>;
  update(id: string, patch: E["patch"]): Promise<{ id: string; op_id: string }>;
  delete(id: string): Promise<{ id: string; op_id: string }>;
}
