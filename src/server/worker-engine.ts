// An Engine whose model runs in a child process (PipelineWorker), so the HTTP server's event loop
// stays free while ONNX Runtime computes and a job can always be stopped. Progress streams back per
// step with previews (preview-VAE decoded when one is loaded); abort is honoured within one step;
// if the model process dies, the running job fails and the next run starts a new one.
import { type Img2ImgResult, PipelineWorker, type RGBImage, type WorkerLoadOptions } from "../index.js";
import { type Engine, engineFromPipeline, type EngineResult, type EngineRunOptions } from "./engine.js";
import { refinerChoices } from "./refiners.js";

/**
 * Loads a model in a child process and returns it as an Engine.
 * @example const engine = await createWorkerEngine("stabilityai/sd-turbo", { threads: 4, previewVae: "auto" }, (m) => console.error(m));
 */
export async function createWorkerEngine(
  modelRef: string | undefined,
  loadOptions: WorkerLoadOptions = {},
  onStatus?: (message: string) => void,
  opts: { refiners?: readonly string[] } = {},
): Promise<Engine & { close(): Promise<void> }> {
  const start = () => PipelineWorker.start(modelRef, loadOptions, { onStatus });
  let worker = await start();
  let restarting: Promise<PipelineWorker> | undefined;

  const run = async (opts: EngineRunOptions): Promise<EngineResult> => {
    if (!worker.alive) {
      restarting ??= start().finally(() => {
        restarting = undefined;
      });
      worker = await restarting;
    }
    const { onProgress } = opts;
    let decoded: RGBImage | undefined; // the latest preview-VAE image: SSE shows it until the next one
    const r: Img2ImgResult = await worker.run(
      {
        ...opts,
        onProgress:
          onProgress &&
          ((e) => {
            decoded = e.decoded ?? decoded;
            onProgress({ step: e.step, total: e.total, elapsedMs: e.elapsedMs, preview: () => decoded ?? e.preview() });
          }),
      },
      { previews: worker.model.tinyVae ? "decoded" : "latent" },
    );
    const { images, seed, width, height, stepsRun, extraGenerationParams } = r;
    return { images, seed, width, height, stepsRun, timings: { totalMs: r.timings.totalMs }, extraGenerationParams, notes: r.notes };
  };

  const engine = engineFromPipeline(
    {
      get modelName() {
        return worker.modelName;
      },
      get modelHash() {
        return worker.modelHash;
      },
      defaults: worker.defaults,
      model: worker.model,
      run,
    },
    { refiners: refinerChoices(opts.refiners ?? []) },
  );
  return Object.assign(engine, { close: () => worker.close() });
}
