// The Sluice client: run an app's named queries (whole results or streamed rows), sign in
// and out, enrol MFA. Dependency-free; runs in browsers and in Node 18+ (global fetch).
//
// Typed per app: pass the `Apps` type that `sluice-types` generates from an app's OpenAPI
// document, and `run('demo', 'get_customer', {id: 'x'})` fails to type-check.

/** A result column: its name and the database's type name. */
export interface Column {
  name: string;
  type: string;
}

/** One query: its params object and one row (an array in column order). */
export interface QueryShape {
  params: Record<string, unknown>;
  row: unknown[];
}

/** Every app a client may call: app name -> query name -> its shape. */
export type AppsShape = Record<string, Record<string, QueryShape>>;

/** Untyped use: any app, any query, any params, rows of unknown cells. */
export type AnyApps = Record<string, Record<string, { params: Record<string, unknown>; row: unknown[] }>>;

/** A whole result. */
export interface Result<Row> {
  columns: Column[];
  rows: Row[];
  rowCount: number;
  /** The query's `max_rows` cut the result short. */
  truncated: boolean;
  /** Rows changed, for statements that return no columns. */
  rowsAffected?: number;
}

/** How a streamed result ended. */
export interface Summary {
  rowCount: number;
  truncated: boolean;
  rowsAffected?: number;
}

/** Every failure the client reports: an error answer, or a result cut short. */
export class SluiceError extends Error {
  /** The HTTP status (200 for a result cut after its rows started; 0 when no answer). */
  readonly status: number;
  /** The gateway's error code (`invalid_params`, `not_found`, `rate_limited`, ...). */
  readonly code: string;
  /** For `invalid_params`: the param at fault. */
  readonly param?: string;
  /** The request id, to quote to an operator (it is in their logs). */
  readonly requestId?: string;
  /** Seconds after which a retry may succeed (`Retry-After`). */
  readonly retryAfter?: number;

  constructor(init: {
    status: number;
    code: string;
    message: string;
    param?: string;
    requestId?: string;
    retryAfter?: number;
  }) {
    super(init.message);
    this.name = "SluiceError";
    this.status = init.status;
    this.code = init.code;
    this.param = init.param;
    this.requestId = init.requestId;
    this.retryAfter = init.retryAfter;
  }
}

export interface RetryOptions {
  /** How many times a 429 is retried (default 2). */
  retries?: number;
  /** Longest wait honoured, in milliseconds (default 10 000); a longer Retry-After fails. */
  maxDelayMs?: number;
}

export interface ClientOptions {
  /** Where the gateway is, e.g. `https://sluice.example.com` (no trailing path). */
  baseUrl: string;
  /**
   * Send the session cookie: `"include"` for a page on another origin (the app must allow
   * that origin), `"same-origin"` (the default) for a page the gateway serves.
   */
  credentials?: RequestCredentials;
  /** An API key (`slk_...`), sent as `Authorization: Bearer`; for servers, not browsers. */
  apiKey?: string;
  /** Retry answers 429 after their `Retry-After` (off unless given). */
  retry?: RetryOptions | boolean;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface StreamOptions extends CallOptions {
  /** Called with the columns before the first row. */
  onColumns?: (columns: Column[]) => void;
}

/** What `me()` and `login()` say about the signed-in user. */
export interface Me {
  [key: string]: unknown;
}

/** What `mfa.enroll()` returns: the secret, its otpauth URI and a QR code as SVG. */
export interface Enrollment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

type ParamsOf<Apps extends AppsShape, A extends keyof Apps, Q extends keyof Apps[A]> =
  Apps[A][Q] extends { params: infer P } ? P : never;
type RowOf<Apps extends AppsShape, A extends keyof Apps, Q extends keyof Apps[A]> =
  Apps[A][Q] extends { row: infer R } ? R : never;

/** The params argument: optional when every param is. */
type ParamsArg<P> = {} extends P ? [params?: P, options?: CallOptions] : [params: P, options?: CallOptions];
type StreamArgs<P> = {} extends P
  ? [params?: P, options?: StreamOptions]
  : [params: P, options?: StreamOptions];

export interface Client<Apps extends AppsShape = AnyApps> {
  /** Runs a query and returns the whole result. */
  run<A extends keyof Apps & string, Q extends keyof Apps[A] & string>(
    app: A,
    query: Q,
    ...args: ParamsArg<ParamsOf<Apps, A, Q>>
  ): Promise<Result<RowOf<Apps, A, Q>>>;
  /**
   * Runs a query and yields its rows as the gateway produces them (NDJSON). The iterator's
   * return value is the summary; a failure, before or after the first row, is thrown as a
   * SluiceError.
   */
  stream<A extends keyof Apps & string, Q extends keyof Apps[A] & string>(
    app: A,
    query: Q,
    ...args: StreamArgs<ParamsOf<Apps, A, Q>>
  ): AsyncGenerator<RowOf<Apps, A, Q>, Summary, undefined>;
  /** Signs in (sets the session cookie); `totpCode` or `recoveryCode` when MFA is on. */
  login(input: { email: string; password: string; totpCode?: string; recoveryCode?: string }, options?: CallOptions): Promise<Me>;
  /** Ends this session. */
  logout(options?: CallOptions): Promise<void>;
  /** Who is signed in (401 SluiceError when nobody). */
  me(options?: CallOptions): Promise<Me>;
  /** Renews fresh auth for sensitive actions. */
  reauth(input: { password: string; totpCode?: string }, options?: CallOptions): Promise<void>;
  mfa: {
    /** Starts enrolment (needs fresh auth). */
    enroll(options?: CallOptions): Promise<Enrollment>;
    /** Confirms enrolment with a code; returns the recovery codes. */
    confirm(code: string, options?: CallOptions): Promise<string[]>;
    /** Turns MFA off (needs fresh auth). */
    disable(options?: CallOptions): Promise<void>;
  };
}

const NDJSON = "application/x-ndjson";

export function createClient<Apps extends AppsShape = AnyApps>(options: ClientOptions): Client<Apps> {
  const base = options.baseUrl.replace(/\/+$/, "");
  const doFetch: typeof fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const retry: Required<RetryOptions> | undefined =
    options.retry === true
      ? { retries: 2, maxDelayMs: 10_000 }
      : options.retry
        ? { retries: options.retry.retries ?? 2, maxDelayMs: options.retry.maxDelayMs ?? 10_000 }
        : undefined;

  async function send(path: string, body: unknown, accept: string, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json", accept };
    if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
    for (let attempt = 0; ; attempt++) {
      let response: Response;
      try {
        response = await doFetch(base + path, {
          method: "POST",
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: options.credentials ?? "same-origin",
          signal,
        });
      } catch (error) {
        if (signal?.aborted) throw error;
        throw new SluiceError({ status: 0, code: "network_error", message: String(error) });
      }
      if (response.status === 429 && retry && attempt < retry.retries) {
        const seconds = Number(response.headers.get("retry-after") ?? "1");
        const delay = Math.max(0, Number.isFinite(seconds) ? seconds : 1) * 1000;
        if (delay <= retry.maxDelayMs) {
          await response.body?.cancel();
          await sleep(delay, signal);
          continue;
        }
      }
      if (!response.ok) throw await errorOf(response);
      return response;
    }
  }

  async function postJson(path: string, body: unknown, signal?: AbortSignal): Promise<any> {
    const response = await send(path, body, "application/json", signal);
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  }

  async function get(path: string, signal?: AbortSignal): Promise<any> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
    const response = await doFetch(base + path, {
      headers,
      credentials: options.credentials ?? "same-origin",
      signal,
    });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  const queryPath = (app: string, query: string) =>
    `/v1/apps/${encodeURIComponent(app)}/queries/${encodeURIComponent(query)}`;

  const client: Client<AnyApps> = {
    async run(app, query, params?, callOptions?) {
      const body = await postJson(queryPath(app, query), { params: params ?? {} }, callOptions?.signal);
      if (body.error) throw cutShort(body.error);
      return {
        columns: body.columns,
        rows: body.rows,
        rowCount: body.row_count,
        truncated: body.truncated === true,
        ...(body.rows_affected === undefined ? {} : { rowsAffected: body.rows_affected }),
      };
    },

    async *stream(app, query, params?, streamOptions?) {
      const response = await send(queryPath(app, query), { params: params ?? {} }, NDJSON, streamOptions?.signal);
      if (!response.body) throw new SluiceError({ status: response.status, code: "no_body", message: "the answer has no body" });
      let header = true;
      for await (const line of lines(response.body)) {
        const value = JSON.parse(line);
        if (header) {
          header = false;
          streamOptions?.onColumns?.(value.columns);
          continue;
        }
        if (Array.isArray(value)) {
          yield value;
          continue;
        }
        if (value.error) throw cutShort(value.error);
        return {
          rowCount: value.row_count,
          truncated: value.truncated === true,
          ...(value.rows_affected === undefined ? {} : { rowsAffected: value.rows_affected }),
        };
      }
      throw new SluiceError({ status: 200, code: "incomplete", message: "the answer ended before its final line" });
    },

    async login(input, callOptions) {
      const body: Record<string, string> = { email: input.email, password: input.password };
      if (input.totpCode) body.totp_code = input.totpCode;
      if (input.recoveryCode) body.recovery_code = input.recoveryCode;
      return postJson("/v1/auth/login", body, callOptions?.signal);
    },
    async logout(callOptions) {
      await postJson("/v1/auth/logout", undefined, callOptions?.signal);
    },
    async me(callOptions) {
      return get("/v1/auth/me", callOptions?.signal);
    },
    async reauth(input, callOptions) {
      const body: Record<string, string> = { password: input.password };
      if (input.totpCode) body.totp_code = input.totpCode;
      await postJson("/v1/auth/reauth", body, callOptions?.signal);
    },
    mfa: {
      async enroll(callOptions) {
        return postJson("/v1/auth/mfa/enroll", undefined, callOptions?.signal);
      },
      async confirm(code, callOptions) {
        const body = await postJson("/v1/auth/mfa/confirm", { code }, callOptions?.signal);
        return body.recovery_codes;
      },
      async disable(callOptions) {
        await postJson("/v1/auth/mfa/disable", undefined, callOptions?.signal);
      },
    },
  };
  return client as unknown as Client<Apps>;
}

/** The error of an answer that is not 2xx: the gateway's JSON error, or its status. */
async function errorOf(response: Response): Promise<SluiceError> {
  const retryAfter = response.headers.get("retry-after");
  let error: any;
  try {
    error = (await response.json())?.error;
  } catch {
    error = undefined;
  }
  return new SluiceError({
    status: response.status,
    code: error?.code ?? `http_${response.status}`,
    message: error?.message ?? response.statusText,
    param: error?.param,
    requestId: error?.request_id ?? response.headers.get("x-request-id") ?? undefined,
    retryAfter: retryAfter === null ? undefined : Number(retryAfter),
  });
}

/** A result whose database failed after its rows started (the answer was 200). */
function cutShort(error: any): SluiceError {
  return new SluiceError({
    status: 200,
    code: error.code,
    message: error.message,
    param: error.param,
    requestId: error.request_id,
  });
}

/** The lines of a byte stream, as they arrive. */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        if (line) yield line;
      }
    }
    pending += decoder.decode();
    if (pending) yield pending;
  } finally {
    // A consumer that stops early (break, an error) cancels the request: the gateway then
    // cancels the statement.
    await reader.cancel().catch(() => {});
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
