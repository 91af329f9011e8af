// The Sluice client: run an app's named queries (whole results or streamed rows), sign in
// and out, enrol MFA. Dependency-free; runs in browsers and in Node 18+ (global fetch).
//
// Typed per app: pass the `Apps` type that `sluice-types` generates from an app's OpenAPI
// document, and `run('demo', 'get_customer', {id: 'x'})` fails to type-check.
/** Every failure the client reports: an error answer, or a result cut short. */
export class SluiceError extends Error {
    constructor(init) {
        super(init.message);
        this.name = "SluiceError";
        this.status = init.status;
        this.code = init.code;
        this.param = init.param;
        this.requestId = init.requestId;
        this.retryAfter = init.retryAfter;
    }
}
const NDJSON = "application/x-ndjson";
export function createClient(options) {
    const base = options.baseUrl.replace(/\/+$/, "");
    const doFetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const retry = options.retry === true
        ? { retries: 2, maxDelayMs: 10000 }
        : options.retry
            ? { retries: options.retry.retries ?? 2, maxDelayMs: options.retry.maxDelayMs ?? 10000 }
            : undefined;
    async function send(path, body, accept, signal) {
        const headers = { "content-type": "application/json", accept };
        if (options.apiKey)
            headers.authorization = `Bearer ${options.apiKey}`;
        for (let attempt = 0;; attempt++) {
            let response;
            try {
                response = await doFetch(base + path, {
                    method: "POST",
                    headers,
                    body: body === undefined ? undefined : JSON.stringify(body),
                    credentials: options.credentials ?? "same-origin",
                    signal,
                });
            }
            catch (error) {
                if (signal?.aborted)
                    throw error;
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
            if (!response.ok)
                throw await errorOf(response);
            return response;
        }
    }
    async function postJson(path, body, signal) {
        const response = await send(path, body, "application/json", signal);
        const text = await response.text();
        return text ? JSON.parse(text) : undefined;
    }
    async function get(path, signal) {
        const headers = { accept: "application/json" };
        if (options.apiKey)
            headers.authorization = `Bearer ${options.apiKey}`;
        const response = await doFetch(base + path, {
            headers,
            credentials: options.credentials ?? "same-origin",
            signal,
        });
        if (!response.ok)
            throw await errorOf(response);
        return response.json();
    }
    const queryPath = (app, query) => `/v1/apps/${encodeURIComponent(app)}/queries/${encodeURIComponent(query)}`;
    const client = {
        async run(app, query, params, callOptions) {
            const body = await postJson(queryPath(app, query), { params: params ?? {} }, callOptions?.signal);
            if (body.error)
                throw cutShort(body.error);
            return {
                columns: body.columns,
                rows: body.rows,
                rowCount: body.row_count,
                truncated: body.truncated === true,
                ...(body.rows_affected === undefined ? {} : { rowsAffected: body.rows_affected }),
            };
        },
        async *stream(app, query, params, streamOptions) {
            const response = await send(queryPath(app, query), { params: params ?? {} }, NDJSON, streamOptions?.signal);
            if (!response.body)
                throw new SluiceError({ status: response.status, code: "no_body", message: "the answer has no body" });
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
                if (value.error)
                    throw cutShort(value.error);
                return {
                    rowCount: value.row_count,
                    truncated: value.truncated === true,
                    ...(value.rows_affected === undefined ? {} : { rowsAffected: value.rows_affected }),
                };
            }
            throw new SluiceError({ status: 200, code: "incomplete", message: "the answer ended before its final line" });
        },
        async login(input, callOptions) {
            const body = { email: input.email, password: input.password };
            if (input.totpCode)
                body.totp_code = input.totpCode;
            if (input.recoveryCode)
                body.recovery_code = input.recoveryCode;
            return postJson("/v1/auth/login", body, callOptions?.signal);
        },
        async logout(callOptions) {
            await postJson("/v1/auth/logout", undefined, callOptions?.signal);
        },
        async me(callOptions) {
            return get("/v1/auth/me", callOptions?.signal);
        },
        async reauth(input, callOptions) {
            const body = { password: input.password };
            if (input.totpCode)
                body.totp_code = input.totpCode;
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
    return client;
}
/** The error of an answer that is not 2xx: the gateway's JSON error, or its status. */
async function errorOf(response) {
    const retryAfter = response.headers.get("retry-after");
    let error;
    try {
        error = (await response.json())?.error;
    }
    catch {
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
function cutShort(error) {
    return new SluiceError({
        status: 200,
        code: error.code,
        message: error.message,
        param: error.param,
        requestId: error.request_id,
    });
}
/** The lines of a byte stream, as they arrive. */
async function* lines(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    try {
        for (;;) {
            const { done, value } = await reader.read();
            if (done)
                break;
            pending += decoder.decode(value, { stream: true });
            let end;
            while ((end = pending.indexOf("\n")) >= 0) {
                const line = pending.slice(0, end);
                pending = pending.slice(end + 1);
                if (line)
                    yield line;
            }
        }
        pending += decoder.decode();
        if (pending)
            yield pending;
    }
    finally {
        // A consumer that stops early (break, an error) cancels the request: the gateway then
        // cancels the statement.
        await reader.cancel().catch(() => { });
    }
}
function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted)
            return reject(signal.reason);
        const timer = setTimeout(resolve, ms);
        signal?.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(signal.reason);
        }, { once: true });
    });
}
