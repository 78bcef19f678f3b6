// The global queue bound of the Redis mode: one sorted set of slots shared by every API process.
// A request reserves a slot (atomically, against the bound) before its body is read; the slot becomes
// the job's when it is queued and is freed when the job finishes. Reservations are leases (Redis time),
// so a crashed API process frees its slots by itself; the job slots of jobs that finished without
// freeing theirs (a worker killed at the wrong moment) are reconciled against BullMQ when the set is full.
import type { Redis } from "ioredis";

// KEYS[1] slots; ARGV: max, lease ms, member. Returns the new size, or -1 when full.
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return -1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
return redis.call('ZCARD', KEYS[1])
`;

// KEYS[1] slots. Drops expired reservations, returns the size.
const SIZE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZCARD', KEYS[1])
`;

/**
 * @example
 * const slots = new Slots(redis, "reimagine:cluster:slots");
 * if (await slots.reserve(jobId, 8, 60_000)) { ...; await slots.hold(jobId); }
 */
export class Slots {
  constructor(
    private readonly redis: Redis,
    readonly key: string,
  ) {}

  /** Takes a slot for `id` for `leaseMs` unless `max` are taken. */
  async reserve(id: string, max: number, leaseMs: number): Promise<boolean> {
    return ((await this.redis.eval(RESERVE, 1, this.key, max, leaseMs, id)) as number) >= 0;
  }

  /** The reservation becomes the queued job's (no lease: freed when the job finishes). */
  async hold(id: string): Promise<void> {
    await this.redis.zadd(this.key, "+inf", id);
  }

  async release(id: string): Promise<void> {
    await this.redis.zrem(this.key, id);
  }

  async size(): Promise<number> {
    return (await this.redis.eval(SIZE, 1, this.key)) as number;
  }

  /** Ids holding job slots (not reservations). */
  async jobs(): Promise<string[]> {
    return this.redis.zrangebyscore(this.key, "+inf", "+inf");
  }
}
