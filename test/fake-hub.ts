// A fake Hugging Face Hub on 127.0.0.1 for tests: serves local folders with the routes and
// headers the real hub uses for downloads (revision info, tree listing, resolve + LFS redirect).
// Ref: huggingface_hub file_download.py (HEAD/GET resolve, X-Linked-Etag, X-Repo-Commit, Range)
// and @huggingface/hub list-files.ts / model-info.ts (tree pagination via Link, revision API).
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";

export interface FakeHubRepo {
  /** Local folder whose files become the repo's files. */
  dir: string;
  /** 40-hex commit served for every revision alias; default: a hash of the repo's content. */
  commit?: string;
  /** When set, every request needs `Authorization: Bearer <token>` (a gated/private repo). */
  token?: string;
}

export interface FakeHubOptions {
  repos: Record<string /* repoId */, FakeHubRepo>;
  /** Cut the first body response of each file after this many bytes (tests resume). */
  failAfterBytes?: number;
  /** Paths whose advertised sha256 (tree lfs.oid, X-Linked-Etag) is wrong. */
  corruptSha?: string[];
  /** Tree entries per page (the rest comes through a `Link: <...>; rel="next"` header). */
  treePageSize?: number;
}

export interface FakeHub {
  url: string;
  close(): Promise<void>;
  /** One line per request: `METHOD /path?query`, plus ` range=bytes=N-` when a Range was sent. */
  requests: string[];
}

interface RepoFile {
  path: string; // posix path inside the repo
  data: Buffer;
  gitOid: string; // git blob sha1 of what git stores (the pointer for LFS files)
  lfs?: { oid: string; size: number; pointerSize: number }; // oid = advertised sha256
}

interface ServedRepo {
  id: string;
  commit: string;
  token?: string;
  files: Map<string, RepoFile>;
  dirs: string[];
}

const LFS_THRESHOLD = 10 * 1024;

const gitBlobOid = (data: Buffer): string => createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");

function walk(dir: string, root = dir, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, root, out);
    else out.push(relative(root, p).split(sep).join("/"));
  }
  return out;
}

function loadRepo(id: string, repo: FakeHubRepo, corrupt: Set<string>): ServedRepo {
  const files = new Map<string, RepoFile>();
  const dirs = new Set<string>();
  for (const path of walk(repo.dir).sort()) {
    const data = readFileSync(join(repo.dir, ...path.split("/")));
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    if (data.length > LFS_THRESHOLD || path.endsWith(".safetensors")) {
      let sha = createHash("sha256").update(data).digest("hex");
      if (corrupt.has(path)) sha = createHash("sha256").update(sha).digest("hex"); // wrong on purpose
      const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${data.length}\n`);
      files.set(path, { path, data, gitOid: gitBlobOid(pointer), lfs: { oid: sha, size: data.length, pointerSize: pointer.length } });
    } else {
      files.set(path, { path, data, gitOid: gitBlobOid(data) });
    }
  }
  const commit =
    repo.commit ??
    createHash("sha1")
      .update(id)
      .update([...files.values()].map((f) => f.path + f.gitOid).join("\n"))
      .digest("hex");
  return { id, commit, token: repo.token, files, dirs: [...dirs].sort() };
}

/** Start the fake hub. Example: `const hub = await startFakeHub({ repos: { "org/m": { dir } } })`. */
export async function startFakeHub(opts: FakeHubOptions): Promise<FakeHub> {
  const corrupt = new Set(opts.corruptSha ?? []);
  const repos = new Map(Object.entries(opts.repos).map(([id, r]) => [id, loadRepo(id, r, corrupt)]));
  const byLfsOid = new Map<string, RepoFile>();
  for (const r of repos.values()) for (const f of r.files.values()) if (f.lfs) byLfsOid.set(f.lfs.oid, f);
  const cutDone = new Set<string>(); // files whose one interrupted response has been sent
  const requests: string[] = [];
  const pageSize = opts.treePageSize ?? 1000;
  let base = "";

  const send = (res: ServerResponse, status: number, headers: Record<string, string>, body?: string | Buffer) => {
    res.writeHead(status, headers);
    res.end(body);
  };
  const error = (res: ServerResponse, status: number, code: string, message: string) =>
    send(res, status, { "Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message }, JSON.stringify({ error: message }));

  /** Auth and revision checks shared by every repo route; returns the repo or answers an error. */
  function open(req: IncomingMessage, res: ServerResponse, id: string, rev: string): ServedRepo | undefined {
    const repo = repos.get(id);
    const auth = req.headers.authorization;
    if (!repo) {
      // Like the real hub: anonymous callers get 401 so private repos are not revealed.
      error(res, auth ? 404 : 401, "RepoNotFound", "Repository not found");
      return undefined;
    }
    if (repo.token && auth !== `Bearer ${repo.token}`) {
      error(res, auth ? 403 : 401, "GatedRepo", `Access to model ${id} is restricted.`);
      return undefined;
    }
    if (rev !== "main" && rev !== "HEAD" && rev !== repo.commit) {
      error(res, 404, "RevisionNotFound", `Invalid rev id: ${rev}`);
      return undefined;
    }
    return repo;
  }

  /** Body with Range support (206 + Content-Range); cuts the first response of a file when asked. */
  function serveBody(req: IncomingMessage, res: ServerResponse, f: RepoFile, headers: Record<string, string>) {
    const size = f.data.length;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size) return send(res, 416, { "Content-Range": `bytes */${size}` });
      status = 206;
      headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    }
    const body = f.data.subarray(start, end + 1);
    res.writeHead(status, { ...headers, "Accept-Ranges": "bytes", "Content-Length": String(body.length) });
    if (req.method === "HEAD") return res.end();
    const cut = opts.failAfterBytes;
    if (cut !== undefined && !cutDone.has(f.path) && body.length > cut) {
      cutDone.add(f.path);
      // The connection drops midway (after the client has had time to read what was sent).
      res.write(body.subarray(0, cut), () => setTimeout(() => res.destroy(), 200));
      return;
    }
    res.end(body);
  }

  function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", base);
    requests.push(`${req.method} ${url.pathname}${url.search}${req.headers.range ? ` range=${req.headers.range}` : ""}`);
    const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);

    // GET /api/models/:org/:name/revision/:rev  (model info: sha + siblings)
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "revision" && parts.length === 6) {
      const id = `${parts[2]}/${parts[3]}`;
      const repo = open(req, res, id, parts[5]);
      if (!repo) return;
      return send(
        res,
        200,
        { "Content-Type": "application/json" },
        JSON.stringify({
          _id: repo.commit.slice(0, 24),
          id,
          modelId: id,
          sha: repo.commit,
          private: false,
          gated: repo.token ? "manual" : false,
          disabled: false,
          downloads: 0,
          likes: 0,
          lastModified: "2024-01-01T00:00:00.000Z",
          pipeline_tag: "image-to-image",
          library_name: "diffusers",
          tags: ["diffusers"],
          siblings: [...repo.files.keys()].map((rfilename) => ({ rfilename })),
        }),
      );
    }

    // GET /api/models/:org/:name/tree/:rev/:path?  (?recursive=true, cursor pagination via Link)
    if (parts[0] === "api" && parts[1] === "models" && parts[4] === "tree" && parts.length >= 6) {
      const id = `${parts[2]}/${parts[3]}`;
      const repo = open(req, res, id, parts[5]);
      if (!repo) return;
      const dir = parts.slice(6).join("/");
      const recursive = url.searchParams.get("recursive") === "true";
      const under = (p: string) => (dir ? p.startsWith(`${dir}/`) : true) && (recursive || !p.slice(dir ? dir.length + 1 : 0).includes("/"));
      const entries: object[] = [
        ...repo.dirs.filter(under).map((path) => ({ type: "directory", oid: gitBlobOid(Buffer.from(path)), size: 0, path })),
        ...[...repo.files.values()]
          .filter((f) => under(f.path))
          .map((f) => ({
            type: "file",
            oid: f.gitOid,
            size: f.lfs ? f.lfs.size : f.data.length,
            path: f.path,
            ...(f.lfs && { lfs: f.lfs }),
          })),
      ];
      if (dir && entries.length === 0 && !repo.files.has(dir)) return error(res, 404, "EntryNotFound", `${dir} does not exist`);
      const offset = Number(url.searchParams.get("cursor") ?? 0);
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (offset + pageSize < entries.length) {
        const next = new URL(url.href);
        next.searchParams.set("cursor", String(offset + pageSize));
        headers.Link = `<${next.href}>; rel="next"`;
      }
      return send(res, 200, headers, JSON.stringify(entries.slice(offset, offset + pageSize)));
    }

    // HEAD/GET /:org/:name/resolve/:rev/:path  (small files inline; LFS files 302 to the "CDN")
    if (parts[2] === "resolve" && parts.length >= 5) {
      const id = `${parts[0]}/${parts[1]}`;
      const repo = open(req, res, id, parts[3]);
      if (!repo) return;
      const f = repo.files.get(parts.slice(4).join("/"));
      if (!f) {
        return send(
          res,
          404,
          { "X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit, "Content-Type": "application/json" },
          JSON.stringify({ error: "Entry not found" }),
        );
      }
      if (f.lfs) {
        return send(res, 302, {
          Location: `${base}/cdn/${f.lfs.oid}?repo=${encodeURIComponent(id)}&expires=9999999999`,
          "X-Repo-Commit": repo.commit,
          ETag: `"${f.gitOid}"`,
          "X-Linked-Etag": `"${f.lfs.oid}"`,
          "X-Linked-Size": String(f.lfs.size),
          "Content-Length": "0",
        });
      }
      return serveBody(req, res, f, { "X-Repo-Commit": repo.commit, ETag: `"${f.gitOid}"`, "Content-Type": "application/octet-stream" });
    }

    // HEAD/GET /cdn/:sha256  (signed CDN URL: no auth needed)
    if (parts[0] === "cdn" && parts.length === 2) {
      const f = byLfsOid.get(parts[1]);
      if (!f) return send(res, 404, {}, "NoSuchKey");
      return serveBody(req, res, f, { ETag: `"${parts[1]}"`, "Content-Type": "application/octet-stream" });
    }
    send(res, 404, { "Content-Type": "text/plain" }, `fake hub: no route for ${req.method} ${url.pathname}`);
  }

  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url: base,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      }),
  };
}
