// The feeds of a graph's LoRA slots (src/graph/lora-slots.ts) for a set of LoRAs with multipliers: per layer, the
// LoRAs' down matrices stacked along the rank axis and their up matrices, scaled by multiplier * alpha / rank, side
// by side; rank 0 (empty tensors) where no LoRA touches a layer. Pure: plain typed arrays in and out.
import type { LoraSlot } from "../graph/lora-slots.js";
import { loraInputNames } from "../graph/lora-slots.js";
import type { LoraComponent } from "./file.js";
import type { LoraLayer, ResolvedLora } from "./resolve.js";

/** A LoRA applied with a multiplier (A1111: te multiplier for text encoders, unet multiplier for the UNet). */
export interface ActiveLora {
  lora: ResolvedLora;
  multiplier: number;
  /** A1111 `dyn`: use only the first ranks (the scale keeps alpha / full rank). */
  dynDim?: number;
}

export interface FeedTensor {
  data: Float32Array;
  dims: number[];
}

/**
 * Feeds for every slot of one component's graph. LoRAs with multiplier 0 are left out (their term is exactly zero).
 * A LoRA layer without a slot in this graph is an error (the graph was built without slots for it).
 *
 * @example
 *   const feeds = loraFeeds(slotsFromInputs(unet.inputNames, shapeOf), "unet", [{ lora, multiplier: 0.8 }]);
 *   await unet.run({ sample, timestep, encoder_hidden_states, ...feeds });
 */
export function loraFeeds(slots: readonly LoraSlot[], component: LoraComponent, active: readonly ActiveLora[]): Record<string, FeedTensor> {
  const bySlot = new Map(slots.map((s) => [s.module, s]));
  const used = active.filter((a) => a.multiplier !== 0);
  for (const a of used) {
    for (const module of a.lora.layers[component]?.keys() ?? []) {
      if (!bySlot.has(module)) throw new Error(`LoRA ${a.lora.name} targets '${module}', which has no LoRA slot in this ${component} graph`);
    }
  }
  const feeds: Record<string, FeedTensor> = {};
  for (const slot of slots) {
    const parts: { layer: LoraLayer; rank: number; scale: number }[] = [];
    for (const a of used) {
      const layer = a.lora.layers[component]?.get(slot.module);
      if (layer) parts.push({ layer, rank: Math.min(layer.rank, a.dynDim ?? Infinity), scale: a.multiplier * layer.scale });
    }
    Object.assign(feeds, slotFeeds(slot, parts));
  }
  return feeds;
}

/** Feeds of one slot: total rank R = sum of the parts' ranks. */
function slotFeeds(slot: LoraSlot, parts: { layer: LoraLayer; rank: number; scale: number }[]): Record<string, FeedTensor> {
  const names = loraInputNames(slot.module);
  const R = parts.reduce((n, p) => n + p.rank, 0);
  const cols = slot.inF * slot.kernel * slot.kernel; // one down row
  const down = new Float32Array(R * cols); // conv: [R, in, k, k]; linear: filled transposed below
  const up = new Float32Array(slot.outF * R); // conv: [out, R]; linear: [R, out]
  let r0 = 0;
  for (const { layer, rank, scale } of parts) {
    const s = Math.fround(scale);
    for (let r = 0; r < rank; r++) {
      const src = layer.down.subarray(r * cols, (r + 1) * cols);
      if (slot.kind === "conv2d") down.set(src, (r0 + r) * cols);
      else for (let i = 0; i < cols; i++) down[i * R + r0 + r] = src[i]; // [in, R]
      for (let o = 0; o < slot.outF; o++) {
        const v = Math.fround(layer.up[o * layer.rank + r] * s);
        if (slot.kind === "conv2d") up[o * R + r0 + r] = v;
        else up[(r0 + r) * slot.outF + o] = v; // [R, out]
      }
    }
    r0 += rank;
  }
  if (slot.kind === "conv2d") {
    return {
      [names.down]: { data: down, dims: [R, slot.inF, slot.kernel, slot.kernel] },
      [names.up]: { data: up, dims: [slot.outF, R] },
    };
  }
  return { [names.down]: { data: down, dims: [slot.inF, R] }, [names.up]: { data: up, dims: [R, slot.outF] } };
}
