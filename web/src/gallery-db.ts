// The gallery kept in the browser's IndexedDB: every result with its input and settings survives a
// reload. Images are stored as Blobs (the PNGs the server sent, metadata included).

export interface StoredResult {
  id: string;
  createdAt: number;
  kind: "img2img" | "sweep";
  /** The request's settings as the server echoed them (prompt, strength, seed, size, ...). */
  settings: Record<string, unknown>;
  infotext: string;
  seed: string;
  image: Blob;
  /** The input that was sent (the "before" of the compare slider). */
  before: Blob;
  /** Sweep cells: one image per strength. */
  extra: { image: Blob; label: string; strength?: number }[];
}

const DB = "reimagine";
const STORE = "results";
/** Oldest results beyond this many are dropped. */
export const GALLERY_LIMIT = 200;

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T> | undefined): Promise<T | undefined> {
  const db = await open();
  try {
    return await new Promise<T | undefined>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req ? req.result : undefined);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  } finally {
    db.close();
  }
}

/** Every stored result, newest first. */
export async function loadGallery(): Promise<StoredResult[]> {
  const all = (await tx<StoredResult[]>("readonly", (s) => s.getAll())) ?? [];
  return all.sort((a, b) => b.createdAt - a.createdAt);
}

/** Stores a result and drops the oldest beyond GALLERY_LIMIT. */
export async function saveResult(r: StoredResult): Promise<void> {
  await tx("readwrite", (s) => {
    s.put(r);
    return undefined;
  });
  const all = await loadGallery();
  for (const old of all.slice(GALLERY_LIMIT)) await deleteResult(old.id);
}

export async function deleteResult(id: string): Promise<void> {
  await tx("readwrite", (s) => {
    s.delete(id);
    return undefined;
  });
}
