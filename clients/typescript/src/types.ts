/**
 * The shapes the server speaks (docs: shared/API.md, docs/CONTRACT.md), and how generated
 * entity types (`plaza codegen ts`) plug into the client.
 */

/** Any JSON value. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** Fields every row carries, whatever its entity. */
export interface SystemFields {
  id: string;
  createdAt: string;
  updatedAt: string;
}

/** One entity's types: the row the server returns, what insert and update take. */
export interface EntityTypes {
  row: SystemFields;
  insert: object;
  patch: object;
}

/** What an app with no generated types gets: any field, any JSON. */
export interface UntypedEntity {
  row: SystemFields & { [field: string]: Json };
  insert: { [field: string]: unknown };
  patch: { [field: string]: unknown };
}

/** The entity map of an app without generated types. */
export type UntypedSchema = Record<string, UntypedEntity>;

/** A map from entity name to its types, e.g. the generated `Entities` interface. */
export type Schema<S> = { [K in keyof S]: EntityTypes };

/** Comparison operators of the filter language. */
export interface FieldOps<V> {
  $eq?: V | null;
  $ne?: V | null;
  $gt?: V;
  $gte?: V;
  $lt?: V;
  $lte?: V;
  $in?: readonly V[];
  $like?: string;
  $not?: FieldCondition<V>;
}

/** A condition on one field: a value (equality) or operators. */
export type FieldCondition<V> = V | null | FieldOps<V>;

/** Accepted as the value of a field of type `V` in filters: bools are stored as 0/1. */
type FilterValue<V> = V extends 0 | 1 ? 0 | 1 | boolean : V;

/** `{"$order": {"field": "asc"}}`, `"-field"`, or `[["field", "desc"]]`. */
export type Order<R> =
  | { [F in keyof R & string]?: "asc" | "desc" }
  | `${"" | "-"}${keyof R & string}`
  | ReadonlyArray<readonly [keyof R & string, "asc" | "desc"]>;

/** The one filter language (queries, subscriptions, live queries, graph `where`). */
export type Filter<R = Record<string, Json>> = {
  [F in keyof R & string]?: FieldCondition<FilterValue<R[F]>>;
} & {
  $and?: Filter<R>[];
  $or?: Filter<R>[];
  $not?: Filter<R>;
  $search?: string;
  $order?: Order<R>;
  $limit?: number;
  $offset?: number;
};

/** One committed change, as pulls and live frames carry it. */
export interface Change<R = Record<string, Json>> {
  seq: number;
  entity: string;
  row_id: string;
  kind: "insert" | "update" | "delete";
  /** The row after the change; absent for deletes. */
  data?: R;
  timestamp: string;
}

/** A session as the sign-in routes answer it. */
export interface Session {
  token: string;
  user_id: string;
  expires_at?: string;
  guest?: boolean;
}

/** Login answered with a second factor owed: finish with `auth.totp.completeLogin`. */
export interface MfaRequired {
  mfa_required: true;
  mfa_token: string;
}

/** `GET /api/auth/me`. */
export interface Me {
  user_id: string | null;
  guest: boolean;
  admin: boolean;
}
