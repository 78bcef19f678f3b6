// Graph: a typed layer over the ONNX IR. Layers add nodes and bind parameters by their
// diffusers weight key; binding is strict (missing, unused and mis-shaped keys are errors
// naming the key). Weights are written as ONNX external data (mmapped by ONNX Runtime),
// so graphs beyond protobuf's 2 GiB limit work.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ReimagineError } from "../errors.js";
import type { WeightSource } from "../weights/source.js";
import { AttrType, DataType, type ElemType, modelProto } from "./onnx-proto.js";

export type Dim = number | string;

/** A symbolic tensor in the graph (an edge name). */
export interface Value {
  readonly name: string;
}

/** A float attribute must be marked (bare numbers are ints, as ONNX attributes are typed). */
export class FloatAttr {
  constructor(readonly value: number) {}
}
export const float = (v: number): FloatAttr => new FloatAttr(v);
export type AttrValue = number | FloatAttr | string | number[] | FloatAttr[];
export type Attrs = Record<string, AttrValue | undefined>;

export interface NodeRecord {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
}

/** A Linear or Conv2d layer as built by layers.ts: its weight-key prefix, input, base output and geometry. */
export interface LayerCall {
  kind: "linear" | "conv2d";
  prefix: string;
  x: Value;
  y: Value;
  inF: number;
  outF: number;
  /** conv2d only: square kernel size, stride, padding. */
  kernel?: number;
  stride?: number;
  padding?: number;
}

/** Element types a parameter may be stored as (int8/uint8: quantized weights). */
export type ParamElemType = "float32" | "int8" | "uint8";
type ParamData = Float32Array | Int8Array | Uint8Array;

interface ParamRecord {
  name: string;
  dims: number[];
  elemType: ParamElemType;
  /** Produces the data at save time (weights are read one tensor at a time). */
  compute: () => ParamData;
  /** How the data derives from the weights: the weight keys read and the source of the transform
   *  (structureHash() covers it, so changing a transform invalidates cached graphs). */
  derivation: string;
}

interface InputRecord {
  name: string;
  elemType: ElemType;
  dims: Dim[];
}

export interface ParamOptions {
  /** Rearranges the stored tensor (e.g. transposes a Linear weight for MatMul). */
  transform?: (data: Float32Array) => Float32Array;
  /** Shape after `transform` (defaults to the stored shape). */
  dims?: number[];
}

const numel = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

export class Graph {
  readonly nodes: NodeRecord[] = [];
  readonly inputs: InputRecord[] = [];
  readonly outputs: { name: string; elemType: ElemType; dims?: Dim[] }[] = [];
  readonly params: ParamRecord[] = [];
  /** Small constants embedded in the model file itself. */
  readonly constants: { name: string; elemType: ElemType; dims: number[]; raw: Uint8Array }[] = [];
  /** Every weight key bound so far, with the shape it is stored in. */
  private readonly usedKeys = new Map<string, readonly number[]>();
  private readonly paramCache = new Map<string, { value: Value; dims: number[] }>();
  private readonly constCache = new Map<string, Value>();
  private counter = 0;
  readonly domains = new Set<string>();
  /**
   * Optional replacement for layers.linear (e.g. an int8 DynamicQuantizeMatMul, see quantize.ts):
   * returns the layer's output, or undefined to build the float32 MatMul.
   */
  linearHook?: (prefix: string, x: Value, inF: number, outF: number, bias: boolean) => Value | undefined;
  /**
   * Optional addition to every layers.linear / layers.conv2d output (e.g. a LoRA side branch, see lora-slots.ts):
   * receives the layer's input and the output its base path (float or hooked) produced, returns the output to use.
   */
  sideBranch?: (layer: LayerCall) => Value;
  /** Optional replacement for layers.conv2d (e.g. an int8 pointwise conv, see quantize.ts), same contract. */
  convHook?: (prefix: string, x: Value, inC: number, outC: number, k: number, opts: { stride: number; padding: number; bias: boolean }) => Value | undefined;

  constructor(
    readonly weights: WeightSource,
    readonly name: string,
    readonly opset = 17,
  ) {}

  private fresh(hint: string): string {
    return `${hint}_${this.counter++}`;
  }

  input(name: string, elemType: ElemType, dims: Dim[]): Value {
    this.inputs.push({ name, elemType, dims });
    return { name };
  }

  /** Declares `v` as a graph output called `name` (an Identity node gives it that name). */
  output(v: Value, name: string, elemType: ElemType = "float32", dims?: Dim[]): void {
    this.nodes.push({ opType: "Identity", domain: "", inputs: [v.name], outputs: [name], attrs: {} });
    this.outputs.push({ name, elemType, dims });
  }

  /** Binds the weight `key`, checking its stored shape equals `shape`. */
  param(key: string, shape: readonly number[], opts: ParamOptions = {}): Value {
    const cached = this.paramCache.get(key);
    if (cached) {
      // the same weight bound twice (e.g. a norm applied at two places) is one initializer
      const dims = opts.dims ?? [...shape];
      if (cached.dims.join() !== dims.join() || opts.transform) {
        throw new Error(`weight '${key}' bound twice with different layouts in ${this.name}`);
      }
      return cached.value;
    }
    this.bindKey(key, shape);
    const src = this.weights;
    const stored = [...shape];
    const dims = opts.dims ?? stored;
    const transform = opts.transform;
    this.params.push({
      name: key,
      dims,
      elemType: "float32",
      compute: () => {
        const data = src.read(key, stored);
        return transform ? transform(data) : data;
      },
      derivation: `${key}[${stored}]${transform ? ` ${transform.toString()}` : ""}`,
    });
    const value = { name: key };
    if (!transform) this.paramCache.set(key, { value, dims });
    return value;
  }

  /** A parameter derived from several weights (e.g. q/k/v concatenated for a fused kernel). */
  derivedParam(name: string, deps: { key: string; shape: readonly number[] }[], dims: number[], combine: (tensors: Float32Array[]) => Float32Array): Value {
    return this.typedParam(name, deps, dims, "float32", combine);
  }

  /**
   * Like derivedParam, stored as `elemType` (int8/uint8 for quantized weights, see quantize.ts).
   * `name` must be unique in the graph.
   */
  typedParam<T extends ParamData>(
    name: string,
    deps: { key: string; shape: readonly number[] }[],
    dims: number[],
    elemType: ParamElemType,
    combine: (tensors: Float32Array[]) => T,
  ): Value {
    for (const d of deps) this.bindKey(d.key, d.shape);
    const src = this.weights;
    this.params.push({
      name,
      dims,
      elemType,
      compute: () => combine(deps.map((d) => src.read(d.key, d.shape))),
      derivation: `${deps.map((d) => `${d.key}[${d.shape}]`).join(",")} ${combine.toString()}`,
    });
    return { name };
  }

  /** True when the weights contain `key` (for optional parameters such as biases). */
  has(key: string): boolean {
    return this.weights.synthetic === true || this.weights.info(key) !== undefined;
  }

  private bindKey(key: string, shape: readonly number[]): void {
    const info = this.weights.info(key);
    if (!this.weights.synthetic) {
      if (!info) {
        throw new ReimagineError(
          `weight '${key}' is missing from ${this.weights.description} (needed by ${this.name}): ` + `the weights do not match the model's config.json`,
          "bad_weights",
        );
      }
      if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
        throw new ReimagineError(
          `weight '${key}' in ${this.weights.description} has shape [${info.shape}] but ${this.name}'s ` +
            `config.json implies [${shape}]: the weights and config do not belong together`,
          "bad_weights",
        );
      }
    }
    this.usedKeys.set(key, [...shape]);
  }

  /** The weight keys this graph binds and their stored shapes (e.g. to write a checkpoint's header). */
  boundWeights(): ReadonlyMap<string, readonly number[]> {
    return this.usedKeys;
  }

  /** Throws naming every weight in the source that no layer bound. */
  checkAllWeightsUsed(ignore: (key: string) => boolean = () => false): void {
    if (this.weights.synthetic) return;
    const unused = this.weights.keys().filter((k) => !this.usedKeys.has(k) && !ignore(k));
    if (unused.length) {
      const shown = unused.slice(0, 5).join(", ") + (unused.length > 5 ? `, ... (${unused.length} in all)` : "");
      throw new ReimagineError(
        `unused weights in ${this.weights.description} for ${this.name}: ${shown}; ` +
          `the config.json does not describe these weights (wrong config or a different architecture)`,
        "bad_weights",
      );
    }
  }

  /** A constant tensor stored inside the model file (small data only). */
  constant(data: Float32Array | number[], dims: number[], elemType: "float32" | "int64" = "float32"): Value {
    const key = `${elemType}:${dims.join(",")}:${Array.from(data).join(",")}`;
    const short = key.length < 2000 ? key : undefined;
    if (short && this.constCache.has(short)) return this.constCache.get(short)!;
    let raw: Uint8Array;
    if (elemType === "int64") {
      const a = BigInt64Array.from(Array.from(data), (x) => BigInt(x));
      raw = new Uint8Array(a.buffer);
    } else {
      const a = Float32Array.from(data);
      raw = new Uint8Array(a.buffer);
    }
    if (raw.length !== numel(dims) * (elemType === "int64" ? 8 : 4)) {
      throw new Error(`constant: ${data.length} values do not fill dims [${dims}]`);
    }
    const name = this.fresh("const");
    this.constants.push({ name, elemType, dims, raw });
    const v = { name };
    if (short) this.constCache.set(short, v);
    return v;
  }

  /** 1-D int64 constant (shapes, axes). */
  ints(values: number[]): Value {
    return this.constant(values, [values.length], "int64");
  }

  /** float32 scalar constant. */
  scalar(v: number): Value {
    return this.constant([v], [], "float32");
  }

  /** Adds one node with a single output. */
  op(opType: string, inputs: (Value | undefined)[], attrs: Attrs = {}, domain = ""): Value {
    return this.opN(opType, inputs, 1, attrs, domain)[0];
  }

  /** Adds one node with `n` outputs. Missing optional inputs are passed as undefined. */
  opN(opType: string, inputs: (Value | undefined)[], n: number, attrs: Attrs = {}, domain = ""): Value[] {
    const outputs = Array.from({ length: n }, () => this.fresh(opType));
    const ins = inputs.map((v) => v?.name ?? "");
    while (ins.length && ins[ins.length - 1] === "") ins.pop();
    if (domain) this.domains.add(domain);
    this.nodes.push({ opType, domain, inputs: ins, outputs, attrs });
    return outputs.map((name) => ({ name }));
  }

  // Convenience wrappers for the most common ops.
  add(a: Value, b: Value): Value {
    return this.op("Add", [a, b]);
  }
  mul(a: Value, b: Value): Value {
    return this.op("Mul", [a, b]);
  }
  matmul(a: Value, b: Value): Value {
    return this.op("MatMul", [a, b]);
  }
  reshape(x: Value, shape: number[]): Value {
    return this.op("Reshape", [x, this.ints(shape)]);
  }
  transpose(x: Value, perm: number[]): Value {
    return this.op("Transpose", [x], { perm });
  }
  concat(xs: Value[], axis: number): Value {
    return this.op("Concat", xs, { axis });
  }

  /**
   * A hash of everything that makes up the graph except the weights' values: inputs, outputs, nodes with
   * their attributes, constants, and each parameter's name, shape, type and derivation. The graph cache
   * keys on it, so a change to any model or layer code rebuilds cached graphs (no version to bump).
   * @example cachedGraph(key, build) // keys on build().structureHash()
   */
  structureHash(): string {
    const attrs = (a: Attrs) =>
      Object.entries(a)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, v instanceof FloatAttr ? { f: v.value } : Array.isArray(v) ? v.map((x) => (x instanceof FloatAttr ? { f: x.value } : x)) : v]);
    const h = createHash("sha256");
    h.update(JSON.stringify({ name: this.name, opset: this.opset, domains: [...this.domains].sort(), inputs: this.inputs, outputs: this.outputs }));
    for (const n of this.nodes) h.update(JSON.stringify([n.opType, n.domain, n.inputs, n.outputs, attrs(n.attrs)]));
    for (const p of this.params) h.update(JSON.stringify([p.name, p.dims, p.elemType, p.derivation]));
    for (const c of this.constants) h.update(JSON.stringify([c.name, c.elemType, c.dims])).update(c.raw);
    return h.digest("hex");
  }

  /**
   * Writes `model.onnx` and its external data file `weights.bin` into `dir`
   * (created if needed). Parameters are computed and written one at a time.
   */
  save(dir: string, opts: { metadata?: Record<string, string> } = {}): string {
    mkdirSync(dir, { recursive: true });
    const dataFile = "weights.bin";
    const fd = openSync(join(dir, dataFile), "w");
    const initializers: object[] = [];
    let offset = 0;
    const ALIGN = 4096; // page-aligned offsets let ONNX Runtime mmap each tensor
    try {
      for (const p of this.params) {
        const data = p.compute();
        const expected = p.elemType === "float32" ? Float32Array : p.elemType === "int8" ? Int8Array : Uint8Array;
        if (!(data instanceof expected)) throw new Error(`parameter '${p.name}' produced ${data.constructor.name}, declared ${p.elemType}`);
        if (data.length !== numel(p.dims)) {
          throw new Error(`parameter '${p.name}' produced ${data.length} values for dims [${p.dims}]`);
        }
        const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
        if (pad) {
          writeSync(fd, new Uint8Array(pad));
          offset += pad;
        }
        const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        let written = 0;
        while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
        initializers.push({
          name: p.name,
          dims: p.dims,
          data_type: DataType[p.elemType],
          data_location: 1, // EXTERNAL
          external_data: [
            { key: "location", value: dataFile },
            { key: "offset", value: String(offset) },
            { key: "length", value: String(bytes.length) },
          ],
        });
        offset += bytes.length;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    for (const c of this.constants) {
      initializers.push({ name: c.name, dims: c.dims, data_type: DataType[c.elemType], raw_data: c.raw });
    }
    const valueInfo = (v: { name: string; elemType: ElemType; dims?: Dim[] }) => ({
      name: v.name,
      type: {
        tensor_type: {
          elem_type: DataType[v.elemType],
          // no shape = unknown rank (outputs are left to ONNX Runtime's shape inference)
          shape: v.dims && { dim: v.dims.map((d) => (typeof d === "number" ? { dim_value: d } : { dim_param: d })) },
        },
      },
    });
    const model = {
      ir_version: 8,
      producer_name: "reimagine",
      producer_version: this.structureHash().slice(0, 16), // which graph structure this file holds
      opset_import: [{ domain: "", version: this.opset }, ...[...this.domains].map((d) => ({ domain: d, version: 1 }))],
      metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: this.nodes.map((n, i) => ({
          input: n.inputs,
          output: n.outputs,
          name: `${n.opType}_${i}`,
          op_type: n.opType,
          domain: n.domain,
          attribute: Object.entries(n.attrs)
            .filter(([, v]) => v !== undefined)
            .map(([name, v]) => encodeAttr(name, v!)),
        })),
        initializer: initializers,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    };
    const bytes = modelProto().encode(modelProto().fromObject(model)).finish();
    const path = join(dir, "model.onnx");
    writeFileSync(`${path}.tmp`, bytes);
    renameSync(`${path}.tmp`, path);
    return path;
  }
}

function encodeAttr(name: string, v: AttrValue): object {
  if (v instanceof FloatAttr) return { name, type: AttrType.FLOAT, f: v.value };
  if (typeof v === "number") {
    if (!Number.isInteger(v)) throw new Error(`attribute '${name}': ${v} is not an int (wrap floats in float())`);
    return { name, type: AttrType.INT, i: v };
  }
  if (typeof v === "string") return { name, type: AttrType.STRING, s: new TextEncoder().encode(v) };
  if (v.length && v[0] instanceof FloatAttr) {
    return { name, type: AttrType.FLOATS, floats: (v as FloatAttr[]).map((f) => f.value) };
  }
  return { name, type: AttrType.INTS, ints: v as number[] };
}

/** Removes a directory tree (used to discard half-built graph caches). */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
