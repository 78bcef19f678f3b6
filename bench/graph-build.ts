// `npx tsx bench/graph-build.ts [repeats]`: how long building each SD 1.5 graph's node list takes (no
// weight is read), and its structure hash, which every model load now pays before the graph-cache lookup
// (src/graph/cache.ts). Prints median and worst milliseconds over the repeats; never fails on speed.
import { RandomWeights } from "../src/weights/random.js";
import { GRAPH_COMPONENTS, sd15Graph } from "./sd15.js";

const repeats = Number(process.argv[2] ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log("component      nodes  params  build ms (median / worst)  hash ms (median)");
for (const name of GRAPH_COMPONENTS.filter((c) => c !== "unet-b2")) {
  const build: number[] = [];
  const hash: number[] = [];
  let nodes = 0;
  let params = 0;
  for (let i = 0; i < repeats; i++) {
    const weights = new RandomWeights(1);
    let t = performance.now();
    const g = sd15Graph(name, 512, weights).build();
    build.push(performance.now() - t);
    t = performance.now();
    g.structureHash();
    hash.push(performance.now() - t);
    if (weights.keys().length) throw new Error(`${name}: building read ${weights.keys().length} weights`);
    [nodes, params] = [g.nodes.length, g.params.length];
  }
  const row = [
    name.padEnd(13),
    String(nodes).padStart(6),
    String(params).padStart(7),
    `${median(build).toFixed(1)} / ${Math.max(...build).toFixed(1)}`.padStart(26),
    median(hash).toFixed(1).padStart(17),
  ];
  console.log(row.join("  "));
}
