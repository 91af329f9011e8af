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
export type AnyApps = Record<string, Record<string, {
    params: Record<string, unknown>;
    row: unknown[];
}>>;
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
export declare class SluiceError extends Error {
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
    });
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
type ParamsOf<Apps extends AppsShape, A extends keyof Apps, Q extends keyof Apps[A]> = Apps[A][Q] extends {
    params: infer P;
} ? P : never;
type RowOf<Apps extends AppsShape, A extends keyof Apps, Q extends keyof Apps[A]> = Apps[A][Q] extends {
    row: infer R;
} ? R : never;
/** The params argument: optional when every param is. */
type ParamsArg<P> = {} extends P ? [params?: P, options?: CallOptions] : [params: P, options?: CallOptions];
type StreamArgs<P> = {} extends P ? [params?: P, options?: StreamOptions] : [params: P, options?: StreamOptions];
export interface Client<Apps extends AppsShape = AnyApps> {
    /** Runs a query and returns the whole result. */
    run<A extends keyof Apps & string, Q extends keyof Apps[A] & string>(app: A, query: Q, ...args: ParamsArg<ParamsOf<Apps, A, Q>>): Promise<Result<RowOf<Apps, A, Q>>>;
    /**
     * Runs a query and yields its rows as the gateway produces them (NDJSON). The iterator's
     * return value is the summary; a failure, before or after the first row, is thrown as a
     * SluiceError.
     */
    stream<A extends keyof Apps & string, Q extends keyof Apps[A] & string>(app: A, query: Q, ...args: StreamArgs<ParamsOf<Apps, A, Q>>): AsyncGenerator<RowOf<Apps, A, Q>, Summary, undefined>;
    /** Signs in (sets the session cookie); `totpCode` or `recoveryCode` when MFA is on. */
    login(input: {
        email: string;
        password: string;
        totpCode?: string;
        recoveryCode?: string;
    }, options?: CallOptions): Promise<Me>;
    /** Ends this session. */
    logout(options?: CallOptions): Promise<void>;
    /** Who is signed in (401 SluiceError when nobody). */
    me(options?: CallOptions): Promise<Me>;
    /** Renews fresh auth for sensitive actions. */
    reauth(input: {
        password: string;
        totpCode?: string;
    }, options?: CallOptions): Promise<void>;
    mfa: {
        /** Starts enrolment (needs fresh auth). */
        enroll(options?: CallOptions): Promise<Enrollment>;
        /** Confirms enrolment with a code; returns the recovery codes. */
        confirm(code: string, options?: CallOptions): Promise<string[]>;
        /** Turns MFA off (needs fresh auth). */
        disable(options?: CallOptions): Promise<void>;
    };
}
export declare function createClient<Apps extends AppsShape = AnyApps>(options: ClientOptions): Client<Apps>;
export {};
