// LoRA slots: a build option that gives every selected Linear / Conv2d a low-rank side branch whose matrices are
// graph INPUTS, y = base(x) + up(down(x)), so switching LoRAs or their weights changes only the feeds: no graph
// rebuild, no second copy of the weights. The rank is a symbolic dimension per layer (several LoRAs = concatenated
// ranks, scale folded into `up`); a layer without LoRA is fed rank 0 (its branch adds exact zeros, so the output is
// base(x) bit for bit). Ref: kohya-ss/PEFT LoRA forward (y + scale * B(A(x))).
import type { Graph, LayerCall } from "./builder.js";

/** Which layers get a slot, by weight-key prefix. */
export type LoraSlotSelector = (layer: Pick<LayerCall, "kind" | "prefix" | "inF" | "outF">) => boolean;

/** Every Linear and Conv2d (LoRA, LoCon, LyCORIS "full" and PEFT target modules are all among them). */
export const allLayers: LoraSlotSelector = () => true;

/** Input names of a layer's slot: the LoRA's own weight-key names. */
export const loraInputNames = (prefix: string) => ({ down: `${prefix}.lora_down`, up: `${prefix}.lora_up` });

/**
 * One slot, with the feed layouts (r = this layer's total rank, scale folded into `up`):
 * - linear: `down` [in, r] (= lora_down^T), `up` [r, out] (= (scale * lora_up)^T)
 * - conv2d: `down` [r, in, k, k] (a Conv with the layer's stride and padding), `up` [out, r] (lora_up's 1x1 kernel,
 *   applied as a MatMul over channels so rank 0 stays a zero-size product)
 */
export interface LoraSlot {
  module: string;
  kind: "linear" | "conv2d";
  inF: number;
  outF: number;
  /** conv2d kernel size (1 for linear). */
  kernel: number;
}

/**
 * Makes `g` give the selected layers LoRA slots (sets Graph.sideBranch; composes with Graph.linearHook, e.g. int8:
 * the branch adds to whatever the base layer produced). Returns the slots, filled as the graph is built.
 *
 * @example
 *   const g = new Graph(weights, "UNet2DConditionModel");
 *   const slots = useLoraSlots(g); // then build the layers; feed loraFeeds(slots, ...) at run time
 */
export function useLoraSlots(g: Graph, select: LoraSlotSelector = allLayers): LoraSlot[] {
  const slots: LoraSlot[] = [];
  g.sideBranch = (layer) => {
    if (!select(layer)) return layer.y;
    const { kind, prefix, x, y, inF, outF } = layer;
    const k = layer.kernel ?? 1;
    const r = `${prefix}.rank`;
    const names = loraInputNames(prefix);
    slots.push({ module: prefix, kind, inF, outF, kernel: k });
    if (kind === "linear") {
      const down = g.input(names.down, "float32", [inF, r]);
      const up = g.input(names.up, "float32", [r, outF]);
      return g.add(y, g.matmul(g.matmul(x, down), up)); // [..., in] -> [..., r] -> [..., out]
    }
    const down = g.input(names.down, "float32", [r, inF, k, k]);
    const up = g.input(names.up, "float32", [outF, r]);
    const p = layer.padding ?? 0;
    const s = layer.stride ?? 1;
    const d = g.op("Conv", [x, down], { kernel_shape: [k, k], strides: [s, s], pads: [p, p, p, p] }); // [B, r, H', W']
    // `up` as a 1x1 Conv over one extra all-zero rank: ORT's kernels leave a K = 0 product uninitialised (Conv) or
    // zero only its first matrix (batched MatMul), so the contraction must never be empty. It costs one multiply-add
    // per output value. (No Reshape with shape arithmetic here: ORT's ReshapeFusion turns it into a -1, which fails at r = 0.)
    const zeros = g.op("ConstantOfShape", [g.concat([g.op("Shape", [y], { start: 0, end: 1 }), g.ints([1]), g.op("Shape", [y], { start: 2, end: 4 })], 0)]); // [B, 1, H', W'] of 0.0
    const upPadded = g.op("Unsqueeze", [g.concat([up, g.constant(new Float32Array(outF), [outF, 1])], 1), g.ints([2, 3])]); // [out, r+1, 1, 1]
    const z = g.op("Conv", [g.concat([d, zeros], 1), upPadded], { kernel_shape: [1, 1] }); // [B, out, H', W']
    return g.add(y, z);
  };
  return slots;
}

/** The slots of a Graph built with useLoraSlots, read from its declared inputs (no weights needed). */
export function loraSlotsOf(g: Pick<Graph, "inputs">): LoraSlot[] {
  const slots: LoraSlot[] = [];
  for (const input of g.inputs) {
    if (!input.name.endsWith(".lora_down")) continue;
    const module = input.name.slice(0, -".lora_down".length);
    const up = g.inputs.find((i) => i.name === loraInputNames(module).up)!;
    const conv = input.dims.length === 4;
    slots.push({
      module,
      kind: conv ? "conv2d" : "linear",
      inF: (conv ? input.dims[1] : input.dims[0]) as number,
      outF: (conv ? up.dims[0] : up.dims[1]) as number,
      kernel: conv ? (input.dims[2] as number) : 1,
    });
  }
  return slots;
}

/**
 * The slots of a built session, from its input names and the model's weight shapes (phase-B pipelines have the
 * session and the weights, not the Graph object).
 *
 * @example slotsFromInputs(session.inputNames, (key) => weights.info(key)?.shape)
 */
export function slotsFromInputs(inputNames: readonly string[], weightShape: (key: string) => readonly number[] | undefined): LoraSlot[] {
  const slots: LoraSlot[] = [];
  for (const name of inputNames) {
    if (!name.endsWith(".lora_down")) continue;
    const module = name.slice(0, -".lora_down".length);
    const shape = weightShape(`${module}.weight`);
    if (!shape || (shape.length !== 2 && shape.length !== 4)) throw new Error(`LoRA slot '${module}': no Linear/Conv2d weight '${module}.weight' in the model`);
    slots.push({ module, kind: shape.length === 2 ? "linear" : "conv2d", outF: shape[0], inF: shape[1], kernel: shape.length === 4 ? shape[2] : 1 });
  }
  return slots;
}
