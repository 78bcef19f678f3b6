// Browser client for the native API: adds the API key (asked for once, kept in localStorage),
// and reads Server-Sent Events through fetch (EventSource cannot send an Authorization header).

const KEY_STORE = "reimagine-api-key";

export class AuthError extends Error {}

export function getKey(): string {
  return localStorage.getItem(KEY_STORE) ?? "";
}
export function setKey(key: string): void {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

/** fetch with the API key; 401 throws AuthError, other non-2xx throw the server's message. */
export async function api(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const key = getKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401) throw new AuthError("this server needs an API key");
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      message = body?.error?.message ?? body?.detail ?? message;
    } catch {
      /* not JSON */
    }
    throw new Error(message);
  }
  return res;
}

export async function apiJson<T>(path: string, init?: RequestInit): Promise<T> {
  return (await api(path, init)).json() as Promise<T>;
}

/** Reads an SSE stream, calling onEvent(name, data) per event, until it ends or `signal` aborts. */
// biome-ignore lint/suspicious/noExplicitAny: each event name carries its own JSON shape (JobView, progress); the handler reads it by event
export async function streamEvents(path: string, onEvent: (event: string, data: any) => void, signal?: AbortSignal): Promise<void> {
  const res = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

export interface ModelInfo {
  name: string;
  hash: string;
  defaults: { steps: number; guidanceScale: number; strength: number; sampler: string };
  vaeScaleFactor: number;
  maxPixels: number;
  /** The resolution the model was trained at (512 SD 1.x, 768 SD 2.x-v, 1024 SDXL); null when unknown. */
  nativeSize?: number | null;
  family?: string | null;
}
export interface SamplerInfo {
  name: string;
  a1111Name: string;
  default: boolean;
}
export interface JobView {
  id: string;
  kind: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  position: number | null;
  progress: { step: number; total: number; fraction: number; etaMs: number | null };
  settings: Record<string, unknown>;
  error: { code: string; message: string } | null;
  result: {
    seed: number | string;
    width: number;
    height: number;
    totalMs: number;
    images: { url: string; seed: number | string; infotext: string; width: number; height: number; strength?: number; ssim?: number }[];
  } | null;
}
