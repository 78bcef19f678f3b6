// --queue URLs and queue names of the Redis job backend.
import { describe, expect, it } from "vitest";
import { parseQueueUrl, queueName } from "./redis-connect.js";

describe("parseQueueUrl", () => {
  it("reads host, port, database, credentials and TLS; the shown form hides the password", () => {
    expect(parseQueueUrl("redis://127.0.0.1:6379/2")).toMatchObject({ host: "127.0.0.1", port: 6379, db: 2, tls: false, shown: "redis://127.0.0.1:6379/2" });
    expect(parseQueueUrl("redis://cache")).toMatchObject({ host: "cache", port: 6379, db: 0 });
    const a = parseQueueUrl("rediss://user:p%40ss@[::1]:7000/0");
    expect(a).toMatchObject({ host: "::1", port: 7000, username: "user", password: "p@ss", tls: true });
    expect(a.shown).toBe("rediss://user:***@[::1]:7000/0");
    expect(parseQueueUrl("redis://:secret@h:1").shown).toBe("redis://:***@h:1/0");
  });

  it("refuses other schemes, paths, queries and non-URLs with a one-line usage error", () => {
    for (const [url, re] of [
      ["localhost:6379", /scheme 'localhost'|is not a URL/],
      ["redis://h:6379/a/b", /only a database number/],
      ["redis://h:6379/0?x=1", /query or fragment/],
      ["nonsense", /is not a URL/],
    ] as const) {
      expect(() => parseQueueUrl(url)).toThrow(re);
    }
  });
});

describe("queueName", () => {
  it("is readable, has no ':' (BullMQ) and differs for models whose slugs collide", () => {
    const a = queueName("stabilityai/sd-turbo");
    expect(a).toMatch(/^model-stabilityai-sd-turbo-[0-9a-f]{8}$/);
    expect(queueName("/models/My Model:v2")).not.toContain(":");
    expect(queueName("a/b")).not.toBe(queueName("a:b"));
  });
});
